"""Retrieved demos: per input, the ``k`` most similar examples of a stored pool by TF-IDF cosine similarity
(scikit-learn), label-balanced where the step has a label field.

Lifecycle: a :class:`RetrievalConfig` is a plain value (the pool itself, not a path or an index), stored in
the search space and in artifacts. A :class:`Retriever` builds its index from that value when a program is
built (once per evaluated variant in a compile, once per load in ``progopt run`` and serving); the index is
a pure function of the pool, so every place that loads the same config retrieves the same demos.

>>> Retriever(config).demos({"sentence": "a gripping, funny film"})
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sklearn.feature_extraction.text import TfidfVectorizer

MAX_K = 64
MAX_POOL = 2000


class RetrievalConfig(BaseModel):
    """How a step retrieves its demos: ``k`` of ``pool`` by similarity of the ``inputs`` fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(ge=1, le=MAX_K)
    inputs: list[str] = Field(min_length=1, description="input fields compared (joined with newlines)")
    label_field: str | None = Field(None, description="balance the retrieved demos over this field's values")
    pool: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_POOL)


def _text(example: Mapping[str, Any], fields: Sequence[str]) -> str:
    return "\n".join(str(example.get(f, "")) for f in fields)


def balanced_top(scores: np.ndarray, labels: Sequence[str] | None, k: int,
                 exclude: Collection[int] = ()) -> list[int]:
    """``k`` indices by descending score (ties: lower index first), none of ``exclude``. With ``labels``,
    round-robin over the labels, each label's turn taking its best remaining example; labels take turns in
    the order of their best example, so with fewer than ``k`` labels each appears about ``k / n_labels``
    times and with more, the ``k`` labels with the most similar examples appear once. The result is sorted
    by pool index."""
    ranked = [int(i) for i in np.lexsort((np.arange(len(scores)), -scores)) if int(i) not in exclude]
    if labels is None:
        return sorted(ranked[:k])
    buckets: dict[str, list[int]] = {}
    for i in ranked:
        buckets.setdefault(labels[i], []).append(i)
    queues = list(buckets.values())  # insertion order = order of each label's best example
    chosen: list[int] = []
    depth = 0
    while len(chosen) < min(k, len(ranked)):
        for queue in queues:
            if depth < len(queue) and len(chosen) < k:
                chosen.append(queue[depth])
        depth += 1
    return sorted(chosen)


class Retriever:
    """A TF-IDF index over one :class:`RetrievalConfig`'s pool (word unigrams and bigrams, sublinear tf)."""

    def __init__(self, config: RetrievalConfig):
        self.config = config
        self._vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        self._texts = [_text(d, config.inputs) for d in config.pool]
        self._matrix = self._vectorizer.fit_transform(self._texts)
        field = config.label_field
        self._labels = [str(d.get(field)) for d in config.pool] if field else None

    def select(self, inputs: Mapping[str, Any]) -> list[int]:
        """Pool indices of the demos for ``inputs``, in pool order (a fixed order shares KV prefixes). A pool
        example with the same inputs is never its own demo, so scoring training examples (the final
        selection's holdout) is leave-one-out, not a lookup of their labels."""
        text = _text(inputs, self.config.inputs)
        scores = np.asarray((self._matrix @ self._vectorizer.transform([text]).T).todense()).ravel()
        same = {i for i, t in enumerate(self._texts) if t == text}
        return balanced_top(scores, self._labels, self.config.k, exclude=same)

    def demos(self, inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [self.config.pool[i] for i in self.select(inputs)]
