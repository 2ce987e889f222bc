"""Process setup shared by the CLI and the Python API: DSPy's response cache location, quiet logs."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import dspy

from optimizer.models.files import cache_dir

_configured: Path | None = None


def configure(cache: str | Path | None = None) -> Path:
    """Put DSPy's disk cache under ``cache``; idempotent per directory. Without ``cache``: the directory
    already configured in this process, else progopt's cache dir (so an in-process CLI call keeps it)."""
    global _configured
    target = Path(cache) if cache else _configured or cache_dir() / "dspy"
    if _configured != target:
        target.mkdir(parents=True, exist_ok=True)
        dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=str(target))
        _configured = target
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # Truncations are recorded per call as typed failures; DSPy's per-call warning only adds noise.
    logging.getLogger("dspy.clients.lm").setLevel(logging.ERROR)
    return target
