"""Models: the pool, the llama.cpp and LiteLLM engines, constrained decoding, prices."""

from optimizer.models.pool import ModelPool
from optimizer.models.spec import GEMMA3, SMOLLM2, ModelSpec

__all__ = ["GEMMA3", "SMOLLM2", "ModelPool", "ModelSpec"]
