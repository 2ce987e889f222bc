"""Resolve user references: a program class or metric as ``path/file.py:Name`` or ``module:Name``.

This is the only place progopt imports user code, and only what the user names."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any


class ProgramReferenceError(ImportError):
    """A ``file.py:Name`` / ``module:Name`` reference that does not resolve."""


def _module(ref: str) -> ModuleType:
    target = ref.partition(":")[0]
    if target.endswith(".py"):
        path = Path(target).resolve()
        if not path.exists():
            raise ProgramReferenceError(f"{ref}: file {path} not found")
        name = f"progopt_user.{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        if name in sys.modules:
            return sys.modules[name]
        root = str(path.parent.parent)
        if root not in sys.path:  # let a program file import its sibling package (programs/...)
            sys.path.insert(0, root)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        except Exception as exc:
            sys.modules.pop(name, None)
            raise ProgramReferenceError(f"{ref}: importing {path} failed: {type(exc).__name__}: {exc}") from exc
        return module
    try:
        return importlib.import_module(target)
    except Exception as exc:
        raise ProgramReferenceError(f"{ref}: cannot import module {target!r}: {type(exc).__name__}: {exc}") from exc


def resolve(ref: str) -> Any:
    """The object a ``file.py:Name`` or ``module:Name`` reference names."""
    if ":" not in ref:
        raise ProgramReferenceError(f"{ref!r}: expected 'path/file.py:Name' or 'module:Name'")
    module = _module(ref)
    obj: Any = module
    for part in ref.partition(":")[2].split("."):
        if not hasattr(obj, part):
            raise ProgramReferenceError(f"{ref}: {module.__name__} has no attribute {part!r}")
        obj = getattr(obj, part)
    return obj


def module_of(ref: str) -> ModuleType:
    """The module a reference points into (for its ``metric`` and ``TASK`` defaults)."""
    return _module(ref)


def source_hash(ref: str) -> str:
    """sha256 of the referenced file's source (or the module's file)."""
    module = _module(ref)
    return hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()  # type: ignore[arg-type]
