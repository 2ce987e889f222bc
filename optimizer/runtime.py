"""Process setup shared by the CLI and the Python API: DSPy's response cache location, quiet logs.

DSPy's response cache is DSPy's own process-wide object (``dspy.cache``); :func:`configure` points it at a
directory when a command or script asks, never at import, and keeps no state of its own."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import dspy
from dspy.clients import DISK_CACHE_DIR

from optimizer.models.files import cache_dir


def configured_cache() -> Path | None:
    """The directory DSPy's disk cache uses, unless it is still DSPy's default (not configured)."""
    current = getattr(dspy.cache, "disk_cache_dir", None)
    return None if not current or Path(current) == Path(DISK_CACHE_DIR) else Path(current)


def configure(cache: str | Path | None = None) -> Path:
    """Put DSPy's disk cache under ``cache``; idempotent per directory. Without ``cache``: the directory
    already configured in this process, else progopt's cache dir (so an in-process CLI call keeps it)."""
    target = Path(cache) if cache else configured_cache() or cache_dir() / "dspy"
    if configured_cache() != target:
        target.mkdir(parents=True, exist_ok=True)
        dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=str(target))
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # Truncations are recorded per call as typed failures; DSPy's per-call warning only adds noise.
    logging.getLogger("dspy.clients.lm").setLevel(logging.ERROR)
    return target
