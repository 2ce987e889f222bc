"""Crafted artifacts for the security tests: a legitimate sentiment artifact rewritten to point at a program
file of the attacker's choosing, with ``source_sha256`` and ``content_sha256`` recomputed as an attacker would."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.fixtures.artifacts import rewrite, save_sentiment

EVIL_PROGRAM = '''
import pathlib
pathlib.Path({marker!r}).write_text("module code ran")
import dspy


class Sentiment(dspy.Module):
    def __init__(self):
        pathlib.Path({marker!r}).write_text("__init__ ran")
        super().__init__()
        self.classify = dspy.Predict("sentence -> sentiment")
'''


def evil_file(path: Path, marker: Path) -> Path:
    """A program file that writes ``marker`` when imported and when its class is built."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(EVIL_PROGRAM.format(marker=str(marker)), encoding="utf-8")
    return path


def crafted(artifact: Path, ref: str, source: Path | None = None) -> Path:
    """A legitimate artifact saved at ``artifact``, then pointed at ``ref`` (re-hashed, with the source hash
    of ``source`` when given: the four lines an attacker needs)."""
    save_sentiment(artifact, n_demos=2)
    sha = hashlib.sha256(source.read_bytes()).hexdigest() if source else None

    def point(doc):
        doc["program"]["ref"] = ref
        if sha:
            doc["program"]["source_sha256"] = sha

    return rewrite(artifact, point)


def plant_bytecode(source: Path, good: str, evil: str) -> None:
    """Writes ``good`` to ``source`` with the bytecode of ``evil`` in its ``__pycache__`` looking fresh: both
    padded to one size and given one mtime, so Python's own import would run the evil bytecode."""
    import importlib.util
    import os
    import py_compile

    size = max(len(good.encode()), len(evil.encode())) + 8

    def pad(text: str) -> bytes:
        data = text.encode()
        return data + b"\n#" + b"x" * (size - len(data) - 2)

    source.write_bytes(pad(evil))
    py_compile.compile(str(source), cfile=importlib.util.cache_from_source(str(source)), doraise=True)
    mtime = source.stat().st_mtime_ns
    source.write_bytes(pad(good))
    os.utime(source, ns=(mtime, mtime))
