"""Resolve program and metric references: ``path/file.py:Name`` or ``module:Name``.

This is the only place progopt imports user code. Two entry points, two levels of trust:

- :func:`resolve` takes a reference the **user** typed (a CLI argument, ``compile(program_ref=...)``): any
  file or importable module, since the user chose it.
- :func:`resolve_trusted` takes a reference an **artifact** carries. It is located and checked without
  running anything (:mod:`optimizer.trusted_files`: only under roots or distributions the user chose, an
  exact unshadowed ``.py`` file, owned and writable by the user alone); its bytes are hashed and compared
  *before* anything runs, and exactly those bytes run (never a bytecode cache, never a second read).
  An exit, an interrupt or a catchable signal raised while the program's code runs becomes a
  :class:`ProgramReferenceError`, not the end of the process.

Neither leaves ``sys.path`` changed: a root is on it only while its module's code runs.

>>> resolve("programs/sentiment.py:Sentiment")
>>> resolve_trusted("programs.sentiment:Sentiment", roots=[Path.cwd()], sha256=None)
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.util
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from optimizer.trusted_files import (
    ProgramReferenceError,
    UntrustedReferenceError,
    locate,
    project_root,
    split_ref,
)

__all__ = ["ProgramReferenceError", "SourceMismatchError", "UntrustedReferenceError", "guarded", "locate",
           "module_of", "portable", "program_root", "resolve", "resolve_trusted", "sha256_file", "source_hash"]

GUARDED_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGPIPE")


class SourceMismatchError(ProgramReferenceError):
    """The referenced file's bytes do not hash to the sha256 the caller expected."""


class _ProgramSignal(Exception):
    """A signal delivered while program code ran under :func:`guarded`."""


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextmanager
def _on_sys_path(root: Path | None) -> Iterator[None]:
    """``root`` first on ``sys.path`` for the block only; ``sys.path`` is restored exactly afterwards."""
    saved = list(sys.path)
    if root is not None:
        sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path[:] = saved


def _raise_signal(signum: int, frame: object) -> None:
    raise _ProgramSignal(signal.Signals(signum).name)


@contextmanager
def guarded(what: str) -> Iterator[None]:
    """Runs program code so that ``sys.exit``, ``KeyboardInterrupt`` and catchable signals it causes (in the
    main thread: SIGTERM, SIGINT, SIGHUP, ...) become a :class:`ProgramReferenceError` naming ``what``; the
    process's own signal handlers are restored afterwards, whatever the code installed. (``os._exit`` and
    SIGKILL cannot be caught by any process: the refusal to run untrusted code is what stops those.)"""
    main = threading.current_thread() is threading.main_thread()
    saved = {}
    if main:
        for name in GUARDED_SIGNALS:
            number = getattr(signal, name, None)
            if number is not None:
                saved[number] = signal.signal(number, _raise_signal)
    try:
        yield
    except (SystemExit, KeyboardInterrupt, _ProgramSignal) as exc:
        kind = {SystemExit: f"exited (code {getattr(exc, 'code', None)!r})", KeyboardInterrupt: "was interrupted"}
        raise ProgramReferenceError(f"{what}: the program's code {kind.get(type(exc), f'raised signal {exc}')}") \
            from None
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


class _VerifiedSource(importlib.abc.SourceLoader):
    """Executes exactly the bytes that were hashed (no second read, no stale bytecode)."""

    def __init__(self, path: Path, data: bytes):
        self.path, self.data = path, data

    def get_filename(self, fullname: str) -> str:
        return str(self.path)

    def get_data(self, path: str) -> bytes:
        if path != str(self.path):
            raise OSError(path)
        return self.data


def _file_module_name(path: Path, data: bytes) -> str:
    """One module per file path and content: a changed file is a new module, never a stale one."""
    return f"progopt_user.{path.stem}_{hashlib.sha1(str(path).encode() + data).hexdigest()[:12]}"


def _import_file(ref: str, location_path: Path, data: bytes, root: Path | None, package: str = "") -> ModuleType:
    """Runs ``data`` (the bytes already read and hashed) as a new module named after path and content, with
    ``root`` on ``sys.path`` so the program can import its siblings, and ``package`` as its ``__package__``
    (relative imports of a ``module:Name`` reference)."""
    name = _file_module_name(location_path, data)
    if name in sys.modules:
        return sys.modules[name]
    loader = _VerifiedSource(location_path, data)
    spec = importlib.util.spec_from_file_location(name, location_path, loader=loader)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    module.__package__ = package
    sys.modules[name] = module
    try:
        with _on_sys_path(root), guarded(ref):
            loader.exec_module(module)
    except ProgramReferenceError:
        sys.modules.pop(name, None)
        raise
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ProgramReferenceError(f"{ref}: importing {location_path} failed: {type(exc).__name__}: {exc}") \
            from exc
    return module


def _import_module(ref: str, target: str, root: Path | None) -> ModuleType:
    try:
        with _on_sys_path(root):
            return importlib.import_module(target)
    except Exception as exc:
        raise ProgramReferenceError(f"{ref}: cannot import module {target!r}: {type(exc).__name__}: {exc}") from exc


def _attribute(ref: str, module: ModuleType) -> Any:
    obj: Any = module
    for part in ref.partition(":")[2].split("."):
        if not hasattr(obj, part):
            raise ProgramReferenceError(f"{ref}: {module.__name__} has no attribute {part!r}")
        obj = getattr(obj, part)
    return obj


def module_of(ref: str) -> ModuleType:
    """The module a user-typed reference points into (for its ``metric`` and ``TASK`` defaults)."""
    target, _ = split_ref(ref)
    if target.endswith(".py"):
        path = Path(target).resolve()
        if not path.is_file():
            raise ProgramReferenceError(f"{ref}: file {path} not found")
        return _import_file(ref, path, path.read_bytes(), path.parent.parent)
    return _import_module(ref, target, Path.cwd())


def resolve(ref: str) -> Any:
    """The object a user-typed ``file.py:Name`` or ``module:Name`` reference names (a relative path is
    resolved from the working directory, and a module may live there)."""
    return _attribute(ref, module_of(ref))


def resolve_trusted(ref: str, *, roots: Sequence[Path], sha256: str | None, packages: Sequence[str] = ()) -> Any:
    """The object an artifact's reference names: located and checked under ``roots`` or the installed
    distributions named in ``packages`` (:func:`optimizer.trusted_files.locate`), its bytes hashed against
    ``sha256`` (``None`` skips the comparison: the caller allowed drift), and only then those bytes run.
    Raises :class:`UntrustedReferenceError` or :class:`SourceMismatchError` before any code runs, and
    :class:`ProgramReferenceError` for whatever the program's code does wrong while it imports."""
    location = locate(ref, roots, packages)
    data = location.path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if sha256 is not None and actual != sha256:
        raise SourceMismatchError(f"{location.path} changed since the artifact was saved (sha256 {actual}, "
                                  f"saved {sha256})")
    module = _import_file(ref, location.path, data, location.root, location.package)
    return _attribute(ref, module)


def source_hash(ref: str) -> str:
    """sha256 of a user-typed reference's file (or the module's file), read without importing it again."""
    module = module_of(ref)
    return sha256_file(Path(module.__file__))  # type: ignore[arg-type]


def portable(ref: str) -> str:
    """A user-typed reference as an artifact stores it: a file under a (safe) project becomes relative to the
    project root (``programs/sentiment.py:Sentiment``), so it resolves against that root from any directory;
    any other file keeps its absolute path."""
    target, attr = split_ref(ref)
    if not target.endswith(".py"):
        return ref
    path = Path(target).resolve()
    root = project_root(path.parent)
    return f"{path.relative_to(root).as_posix()}:{attr}" if root else f"{path.as_posix()}:{attr}"


def program_root(ref: str) -> Path:
    """The directory to trust so that the artifact of a user-typed reference loads: the project root its
    portable form is relative to, else the file's own directory (a ``module:Name`` resolves from the working
    directory, as :func:`resolve` found it)."""
    target, _ = split_ref(ref)
    if not target.endswith(".py"):
        return Path.cwd().resolve()
    path = Path(target).resolve()
    return project_root(path.parent) or path.parent
