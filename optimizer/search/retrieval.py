"""Retrieved-demo candidates of a step: the step's training examples as a pool, one candidate per size."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import dspy

from optimizer.space.retrieval import MAX_POOL, RetrievalConfig


def retrieval_pool(fields: Sequence[str], examples: Sequence[dict[str, Any]], seed: int,
                   limit: int = MAX_POOL) -> list[dict[str, Any]]:
    """The examples that have every field, restricted to ``fields``; above ``limit``, a seeded sample of
    ``limit`` of them (kept in their original order)."""
    usable = [{f: ex[f] for f in fields} for ex in examples if all(ex.get(f) is not None for f in fields)]
    if len(usable) > limit:
        keep = sorted(random.Random(seed).sample(range(len(usable)), limit))
        usable = [usable[i] for i in keep]
    return usable


def retrieval_candidates(signature: type[dspy.Signature], label_field: str | None,
                         examples: Sequence[dict[str, Any]], sizes: Sequence[int],
                         seed: int) -> dict[str, RetrievalConfig]:
    """``{"knn{k}": RetrievalConfig}`` per size over the step's pool (none if the pool is empty)."""
    fields = [*signature.input_fields, *signature.output_fields]
    pool = retrieval_pool(fields, examples, seed)
    if not pool:
        return {}
    return {f"knn{k}": RetrievalConfig(k=k, inputs=list(signature.input_fields), label_field=label_field, pool=pool)
            for k in sizes}
