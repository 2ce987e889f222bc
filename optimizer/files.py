"""Reading a file the user named: only a regular file, refused before anything is read otherwise.

A named pipe (FIFO) would block ``open`` until a writer came, a device could stream forever or act on open
(a tape rewinds), a socket cannot be read at all. Each is refused with :class:`NotARegularFile`, an
``OSError`` whose ``strerror`` says what the path is, so a loader's existing ``OSError`` handling reports it.

>>> raw = read_regular(Path("sentiment.json"), max_bytes=16 * 1024 * 1024 + 1)
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
         (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class NotARegularFile(OSError):
    """The path exists but is a directory, FIFO, device or socket (``kind``)."""

    def __init__(self, path: str | Path, kind: str):
        self.kind = kind
        # a directory keeps the words the CLI has always printed for it
        what = "is a directory, not a file" if kind == "a directory" else f"is {kind}, not a regular file"
        super().__init__(errno.EISDIR if kind == "a directory" else errno.EINVAL, what, str(path))


def _kind(mode: int) -> str | None:
    """What a non-regular file is (``None`` for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in KINDS if test(mode)), "not a regular file")


def check_regular(path: str | Path) -> None:
    """Raise :class:`NotARegularFile` unless ``path`` (symlinks followed) is a regular file; ``OSError`` (e.g.
    ``FileNotFoundError``) if it cannot be stat'ed. Opens nothing."""
    kind = _kind(os.stat(path).st_mode)
    if kind is not None:
        raise NotARegularFile(path, kind)


def read_regular(path: str | Path, max_bytes: int | None = None) -> bytes:
    """The bytes of the regular file ``path`` (at most ``max_bytes`` when given). Checked with ``stat`` before
    opening, opened non-blocking (a FIFO swapped in after the check cannot block) and checked again on the
    open descriptor before reading. Raises :class:`NotARegularFile` or the ``OSError`` of stat/open/read."""
    check_regular(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        kind = _kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise NotARegularFile(path, kind)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=True) as fh:
            fd = -1  # the file object owns it now
            return fh.read() if max_bytes is None else fh.read(max_bytes)
    finally:
        if fd >= 0:
            os.close(fd)


def lone_surrogate(text: str) -> bool:
    """True when ``text`` holds a lone surrogate (``"\\ud800"`` in JSON): not Unicode, so no file can hold it."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
