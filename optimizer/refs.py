"""Resolve program and metric references: ``path/file.py:Name`` or ``module:Name``.

This is the only place progopt imports user code. Two entry points, two levels of trust:

- :func:`resolve` takes a reference the **user** typed (a CLI argument, ``compile(program_ref=...)``): any
  file or importable module, since the user chose it.
- :func:`resolve_trusted` takes a reference an **artifact** carries. It is located without running anything,
  only inside the trusted roots (directories the user trusts) or an installed distribution; ``..``, absolute
  paths outside the roots and symlinks leading out are refused; the file's bytes are hashed and compared
  *before* the import, and those same bytes are what runs.

Neither leaves ``sys.path`` changed: a root is on it only while its module's code runs.

>>> resolve("programs/sentiment.py:Sentiment")
>>> resolve_trusted("programs.sentiment:Sentiment", roots=[Path.cwd()], sha256=None)
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.metadata
import importlib.util
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

PROJECT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")


class ProgramReferenceError(ImportError):
    """A ``file.py:Name`` / ``module:Name`` reference that does not resolve."""


class UntrustedReferenceError(ProgramReferenceError):
    """A reference an artifact carries that points outside the trusted roots and installed distributions."""


class SourceMismatchError(ProgramReferenceError):
    """The referenced file's bytes do not hash to the sha256 the caller expected."""


@dataclass(frozen=True)
class Location:
    """Where a reference's code lives: its file, and the root to put on ``sys.path`` while it imports
    (``None`` for an installed module, already importable)."""

    path: Path
    root: Path | None
    module: str | None = None  # the dotted name of a ``module:Name`` reference


def project_root(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` holding a project marker (pyproject.toml, .git, ...)."""
    for directory in (start, *start.parents):
        if any((directory / marker).exists() for marker in PROJECT_MARKERS):
            return directory
    return None


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


def _split(ref: str) -> tuple[str, str]:
    target, sep, attr = ref.partition(":")
    if not sep or not target or not attr:
        raise ProgramReferenceError(f"{ref!r}: expected 'path/file.py:Name' or 'module:Name'")
    return target, attr


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _locate_file(target: str, roots: Sequence[Path]) -> Location:
    posix = PurePosixPath(target.replace("\\", "/"))
    if ".." in posix.parts:
        raise UntrustedReferenceError(f"{target}: a program path in an artifact may not contain '..'")
    outside = None
    for root in roots:
        root = root.resolve()
        candidate = Path(posix) if posix.is_absolute() else root / posix
        if not candidate.is_file():
            continue
        resolved = candidate.resolve()
        if _inside(resolved, root):
            return Location(resolved, root)
        outside = resolved
    if outside is not None:
        raise UntrustedReferenceError(f"{target}: resolves to {outside}, outside the trusted roots ({_names(roots)})")
    raise UntrustedReferenceError(f"{target}: not a file under the trusted roots ({_names(roots)}); "
                                  "trust its directory explicitly (--trust DIR or PROGOPT_TRUST) to load it")


def _module_file(base: Path, parts: Sequence[str], root: Path) -> Path | None:
    """``base/a/b.py`` or ``base/a/b/__init__.py`` for ``parts`` ``[a, b]``, every step inside ``root``."""
    directory = base
    for part in parts[:-1]:
        directory = directory / part
        if not directory.is_dir() or not _inside(directory.resolve(), root):
            return None
    for candidate in (directory / f"{parts[-1]}.py", directory / parts[-1] / "__init__.py"):
        if candidate.is_file():
            return candidate.resolve() if _inside(candidate.resolve(), root) else None
    return None


def _installed_file(parts: Sequence[str]) -> Path | None:
    """The file of ``a.b.c`` inside an installed distribution's top-level package, found without importing."""
    if parts[0] not in importlib.metadata.packages_distributions():
        return None  # the standard library and loose files on sys.path are not distributions
    spec = importlib.util.find_spec(parts[0])  # a top-level find_spec runs no package code
    if spec is None or spec.origin is None:
        return None
    if len(parts) == 1:
        return Path(spec.origin).resolve()
    for location in spec.submodule_search_locations or ():
        base = Path(location).resolve()
        found = _module_file(base, parts[1:], base)
        if found is not None:
            return found
    return None


def _locate_module(target: str, roots: Sequence[Path]) -> Location:
    parts = target.split(".")
    if not all(part.isidentifier() for part in parts):
        raise ProgramReferenceError(f"{target!r} is not a dotted module name")
    for root in roots:
        root = root.resolve()
        found = _module_file(root, parts, root)
        if found is not None:
            return Location(found, root, target)
    found = _installed_file(parts)
    if found is not None:
        return Location(found, None, target)
    raise UntrustedReferenceError(f"{target}: no module of that name under the trusted roots ({_names(roots)}) "
                                  "or in an installed distribution")


def locate(ref: str, roots: Sequence[Path]) -> Location:
    """Where an artifact's reference lives, found without running any code; raises
    :class:`UntrustedReferenceError` when it is outside ``roots`` and the installed distributions."""
    target, _ = _split(ref)
    return _locate_file(target, roots) if target.endswith(".py") else _locate_module(target, roots)


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


def _import_file(ref: str, path: Path, data: bytes, root: Path | None) -> ModuleType:
    name = _file_module_name(path, data)
    if name in sys.modules:
        return sys.modules[name]
    loader = _VerifiedSource(path, data)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    try:
        with _on_sys_path(root):  # lets a program file import its sibling package (programs/...)
            loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ProgramReferenceError(f"{ref}: importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def _import_module(ref: str, target: str, root: Path | None, expected: Path | None = None) -> ModuleType:
    try:
        with _on_sys_path(root):
            module = importlib.import_module(target)
    except Exception as exc:
        raise ProgramReferenceError(f"{ref}: cannot import module {target!r}: {type(exc).__name__}: {exc}") from exc
    if expected is not None and Path(module.__file__ or "").resolve() != expected:
        raise UntrustedReferenceError(f"{ref}: a module {target!r} from {module.__file__} is already imported in "
                                      f"this process, not the trusted {expected}")
    return module


def _attribute(ref: str, module: ModuleType) -> Any:
    obj: Any = module
    for part in ref.partition(":")[2].split("."):
        if not hasattr(obj, part):
            raise ProgramReferenceError(f"{ref}: {module.__name__} has no attribute {part!r}")
        obj = getattr(obj, part)
    return obj


def module_of(ref: str) -> ModuleType:
    """The module a user-typed reference points into (for its ``metric`` and ``TASK`` defaults)."""
    target, _ = _split(ref)
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


def resolve_trusted(ref: str, *, roots: Sequence[Path], sha256: str | None) -> Any:
    """The object an artifact's reference names, imported only from inside ``roots`` or an installed
    distribution, and only when its file hashes to ``sha256`` (``None`` skips the comparison: the caller
    allowed drift). Raises :class:`UntrustedReferenceError` or :class:`SourceMismatchError` before any import."""
    location = locate(ref, roots)
    data = location.path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if sha256 is not None and actual != sha256:
        raise SourceMismatchError(f"{location.path} changed since the artifact was saved (sha256 {actual}, "
                                  f"saved {sha256})")
    if location.module is None:
        module = _import_file(ref, location.path, data, location.root)
    else:
        module = _import_module(ref, location.module, location.root, location.path)
    return _attribute(ref, module)


def source_hash(ref: str) -> str:
    """sha256 of a user-typed reference's file (or the module's file), read without importing it again."""
    module = module_of(ref)
    return sha256_file(Path(module.__file__))  # type: ignore[arg-type]


def portable(ref: str) -> str:
    """A user-typed reference as an artifact stores it: a file under a project becomes relative to the
    project root (``programs/sentiment.py:Sentiment``), so it resolves against that root from any directory."""
    target, attr = _split(ref)
    if not target.endswith(".py"):
        return ref
    path = Path(target).resolve()
    root = project_root(path.parent)
    return f"{path.relative_to(root).as_posix()}:{attr}" if root else f"{path.as_posix()}:{attr}"


def _names(paths: Sequence[Path]) -> str:
    return ", ".join(str(p) for p in paths) or "none"
