"""Output files written atomically: checked before any work starts, replaced in one step at the end.

Lifecycle: :func:`check_output` when the command starts (refuses a directory, an input file, a directory it
cannot write to), then :func:`write_atomic` once the content is complete. A failure in between leaves an
existing file exactly as it was; a partial file is never visible under the output's name."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from optimizer.errors import UsageError


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def check_output(path: Path, option: str, inputs: Iterable[Path] = ()) -> None:
    """Raise :class:`UsageError` unless ``path`` can be written atomically without touching an input."""
    where = f"{option} {path}"
    if path.is_dir():
        raise UsageError("is a directory, not a file", where)
    for source in inputs:
        if _same(path, source):
            raise UsageError(f"would overwrite the input {source}", where)
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"{parent} is not a directory", where)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write there ({exc.strerror or exc})", where) from None
