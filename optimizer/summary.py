"""The aggregates of one evaluation (:meth:`optimizer.evaluate.Evaluation.summary`), as a typed value.

A plain pydantic record at the bottom of the import graph: trial records, results, the tracker, the
artifact writer and reports read its fields; nothing here runs a model."""

from __future__ import annotations

from pydantic import BaseModel


class Summary(BaseModel):
    """Score with its bootstrap 95% CI, validity, cost, latency, LM calls and tokens of a variant on a data
    slice. ``by_model``/``by_step``: :func:`optimizer.accounting.totals` of its calls. ``scores`` and
    ``rows`` keep the per-example results, so two variants scored on the same slice compare paired
    (:func:`optimizer.statistics.paired_difference`); records stored before they existed have them empty."""


    examples: int
    score: float
    score_ci: list[float]
    validity_rate: float
    cost_per_example: float
    latency_p50_s: float
    latency_p95_s: float
    lm_calls: int
    cached_calls: int
    input_tokens: int
    output_tokens: int
    truncations: int = 0
    failure_rate: float = 0.0
    call_failure_rate: float = 0.0
    by_model: dict[str, dict[str, float]] = {}
    by_step: dict[str, dict[str, float]] = {}
    mean_confidence: float | None = None  # label scoring: the mean calibrated probability of the chosen label
    scores: list[float] = []  # each example's score, in the slice's order (paired comparisons use them)
    rows: list[list[float]] = []  # a corpus metric's per-example statistics (micro F1: tp, fp, fn); else empty
    aggregate: str = "mean"  # how rows combine into the score: optimizer.statistics.AGGREGATES, or "custom"

    def paired_rows(self) -> list[list[float]]:
        """The rows a paired comparison resamples: the corpus metric's, else ``[score]`` per example."""
        return self.rows or [[s] for s in self.scores]
