"""Find an artifact's program file without running anything, and say whether it is safe to run.

A reference an artifact carries (``path/file.py:Name`` or ``module:Name``) is located only

- inside a **trusted root**: a directory the user chose (``--trust DIR``, ``$PROGOPT_TRUST``, the trust file
  ``progopt compile`` writes); or
- inside an **installed distribution the user named** (``--trust-package NAME``, ``$PROGOPT_TRUST_PACKAGES``):
  no other installed package is trusted, the standard library and loose ``sys.path`` entries never.

and only when the file is exactly one thing: a ``.py`` source file that no package directory, extension
module or sourceless bytecode of the same name shadows. Ownership is checked the way ``ssh`` checks key files
(:func:`unsafe_reason`): the file and every directory from it up to its root must be owned by the user (or
root) and not writable by other users, and no directory above the root may let others rename it.

Nothing here imports, executes or opens a file for reading; it looks at names and ``stat`` results only.

>>> locate("programs/sentiment.py:Sentiment", roots=[Path("/home/me/proj")], packages=())
Location(path=PosixPath('/home/me/proj/programs/sentiment.py'), root=PosixPath('/home/me/proj'), package='')
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

PROJECT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")
SHADOW_SUFFIXES = (".pyc", ".pyo", ".so", ".pyd")  # what Python would import instead of, or besides, a .py


class ProgramReferenceError(ImportError):
    """A ``file.py:Name`` / ``module:Name`` reference that does not resolve."""


class UntrustedReferenceError(ProgramReferenceError):
    """A reference an artifact carries that points outside what the user trusts, or at an unsafe file."""


@dataclass(frozen=True)
class Location:
    """An artifact's program file, the trusted root it lies in (put on ``sys.path`` while it runs, so it can
    import its siblings), and the dotted package it belongs to (``""`` for a file reference)."""

    path: Path
    root: Path
    package: str = ""


def split_ref(ref: str) -> tuple[str, str]:
    """``("path/file.py" or "a.b", "Name")`` for a reference; raises :class:`ProgramReferenceError`."""
    target, sep, attr = ref.partition(":")
    if not sep or not target or not attr:
        raise ProgramReferenceError(f"{ref!r}: expected 'path/file.py:Name' or 'module:Name'")
    return target, attr


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def unsafe_reason(path: Path) -> str | None:
    """Why ``path`` may not be trusted, or None: owned by another user than you or root, or writable by
    other users (group-writable is allowed only for your own primary group). ``ssh``'s StrictModes rule."""
    try:
        st = path.stat()
    except OSError as exc:
        return f"{path} cannot be checked ({exc.strerror})"
    if st.st_uid not in (os.getuid(), 0):
        return f"{path} is owned by another user (uid {st.st_uid})"
    if st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP and st.st_gid != os.getgid()):
        return f"{path} is writable by other users (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _renamable(directory: Path) -> bool:
    """Whether others may rename entries of ``directory`` (writable by them without the sticky bit)."""
    try:
        mode = directory.stat().st_mode
    except OSError:
        return True
    shared = mode & stat.S_IWOTH or (mode & stat.S_IWGRP and directory.stat().st_gid != os.getgid())
    return bool(shared) and not mode & stat.S_ISVTX


def check_safe(path: Path, root: Path) -> None:
    """Refuses ``path`` unless it, every directory up to ``root``, and ``root`` are safe, and no directory
    above ``root`` lets other users swap it. Raises :class:`UntrustedReferenceError` naming the culprit."""
    chain = [path, *[p for p in path.parents if _inside(p, root)]]
    for item in chain:
        reason = unsafe_reason(item)
        if reason:
            raise UntrustedReferenceError(f"{reason}; refusing to run code from it (fix it with chmod go-w / "
                                          "chown, as ssh asks of key files)")
    for above in root.parents:
        if _renamable(above):
            raise UntrustedReferenceError(f"{above}, above the trusted root {root}, is writable by other users "
                                          "without the sticky bit: they could replace the root")


def project_root(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` holding a project marker (pyproject.toml, .git, ...) that
    is safe: the directory and the marker owned by you (or root) and not writable by others. The search stops
    at the first unsafe directory (a shared ``/tmp`` is never a project). Used to store portable references."""
    for directory in (start, *start.parents):
        if unsafe_reason(directory):
            return None
        for marker in PROJECT_MARKERS:
            candidate = directory / marker
            if candidate.exists() and not unsafe_reason(candidate):
                return directory
    return None


def _shadowed(source: Path) -> str | None:
    """What else Python could import for ``source`` (``x.py``): a package ``x/``, ``x.*.so``, ``x.pyc``, or
    compiled bytecode in ``__pycache__``; None when the source is the only candidate."""
    stem, parent = source.stem, source.parent
    if (parent / stem).is_dir():
        return f"a package directory {parent / stem} shadows {source.name}"
    for sibling in parent.iterdir():
        if sibling != source and sibling.name.split(".")[0] == stem and sibling.suffix in SHADOW_SUFFIXES:
            return f"{sibling} would be imported instead of, or besides, {source.name}"
    return None


def _checked(candidate: Path, root: Path, what: str) -> Path:
    resolved = candidate.resolve()
    if not _inside(resolved, root):
        raise UntrustedReferenceError(f"{what}: resolves to {resolved}, outside the trusted root {root}")
    if resolved.suffix != ".py" or not resolved.is_file():
        raise UntrustedReferenceError(f"{what}: {resolved} is not a .py source file")
    shadow = _shadowed(resolved)
    if shadow:
        raise UntrustedReferenceError(f"{what}: {shadow}; refusing an ambiguous program file")
    check_safe(resolved, root)
    return resolved


def _locate_file(target: str, roots: Sequence[Path]) -> Location:
    posix = PurePosixPath(target.replace("\\", "/"))
    if ".." in posix.parts or "\x00" in target:
        raise UntrustedReferenceError(f"{target!r}: a program path in an artifact may not contain '..'")
    for root in roots:
        root = root.resolve()
        candidate = Path(posix) if posix.is_absolute() else root / posix
        if candidate.is_file() and (_inside(candidate.resolve(), root) or not posix.is_absolute()):
            return Location(_checked(candidate, root, target), root)
    raise UntrustedReferenceError(f"{target}: not a file under the trusted roots ({names(roots)}); "
                                  "trust its directory explicitly (--trust DIR or PROGOPT_TRUST) to load it")


def _module_file(base: Path, parts: Sequence[str]) -> Path | None:
    """``base/a/b.py`` for ``parts`` ``[a, b]``: a plain module only (a package's ``__init__`` is a package's
    code, not a program file); :func:`_checked` then refuses it if it resolves outside ``base``."""
    directory = base.joinpath(*parts[:-1])
    if not directory.is_dir():
        return None
    candidate = directory / f"{parts[-1]}.py"
    return candidate if candidate.is_file() else None


def _distribution_roots(packages: Sequence[str]) -> dict[str, Path]:
    """Top-level import name -> its directory, for the installed distributions the user named. A top-level
    ``find_spec`` runs no package code."""
    owners = importlib.metadata.packages_distributions()
    wanted = {_normal(p) for p in packages}
    found = {}
    for top, dists in owners.items():
        if not any(_normal(d) in wanted for d in dists):
            continue
        spec = importlib.util.find_spec(top)
        if spec is not None and spec.submodule_search_locations:
            found[top] = Path(next(iter(spec.submodule_search_locations))).resolve()
    return found


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _locate_module(target: str, roots: Sequence[Path], packages: Sequence[str]) -> Location:
    parts = target.split(".")
    if not all(part.isidentifier() and part.isascii() for part in parts):
        raise ProgramReferenceError(f"{target!r} is not a dotted module name")
    package = ".".join(parts[:-1])
    for root in roots:
        root = root.resolve()
        found = _module_file(root, parts)
        if found is not None:
            return Location(_checked(found, root, target), root, package)
    installed = _distribution_roots(packages) if packages and len(parts) > 1 else {}
    if parts[0] in installed:
        top = installed[parts[0]]
        found = _module_file(top, parts[1:])
        if found is not None:
            return Location(_checked(found, top, target), top.parent, package)
    raise UntrustedReferenceError(f"{target}: no module of that name under the trusted roots ({names(roots)}) or in "
                                  f"a distribution you trust ({', '.join(packages) or 'none'}); installed packages "
                                  "are not trusted unless named (--trust-package NAME or PROGOPT_TRUST_PACKAGES)")


def locate(ref: str, roots: Sequence[Path], packages: Sequence[str] = ()) -> Location:
    """Where an artifact's reference lives, found and checked without running any code; raises
    :class:`UntrustedReferenceError` when it is outside what the user trusts or unsafe."""
    target, _ = split_ref(ref)
    try:
        return _locate_file(target, roots) if target.endswith(".py") else _locate_module(target, roots, packages)
    except (OSError, ValueError) as exc:  # a name too long, a NUL or a lone surrogate in it, a vanished file
        raise UntrustedReferenceError(f"{target!r}: cannot be checked ({type(exc).__name__}: {exc})") from None


def names(paths: Sequence[Path]) -> str:
    return ", ".join(str(p) for p in paths) or "none"
