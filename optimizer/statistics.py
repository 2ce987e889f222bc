"""Scores of a data slice and their uncertainty: a metric's per-example rows combined into one score, the
bootstrap CI of that score, and the paired CI of the difference between two variants on the same examples.

A row is what one example contributes: ``[score]`` for a plain metric (the score is the rows' mean), or a
corpus metric's statistics (``[tp, fp, fn]`` for micro F1, combined by its ``aggregate``). Every CI resamples
examples (rows), seeded, so the same rows always give the same interval; a paired CI resamples the same
example indices for both variants, which is what makes a difference between two variants measured on the
same examples far narrower than either CI alone."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0

Aggregate = Callable[[np.ndarray], float]


def mean_of_first(rows: np.ndarray) -> float:
    """A plain metric's aggregate: the mean of the per-example scores (column 0)."""
    return float(rows[:, 0].mean()) if len(rows) else 0.0


def micro_f1(rows: np.ndarray) -> float:
    """Micro F1 of ``[tp, fp, fn]`` rows: the counts summed over the slice, then F1; 0 for nothing found."""
    if not len(rows):
        return 0.0
    tp, fp, fn = rows.sum(axis=0)[:3]
    return float(2 * tp / (2 * tp + fp + fn)) if tp else 0.0


# Aggregates by the name a summary records (``Summary.aggregate``), so a stored result can be re-aggregated
# (a sweep's head-to-head) without the metric's code; a custom corpus metric's name is not here.
AGGREGATES: dict[str, Aggregate] = {"mean": mean_of_first, "micro_f1": micro_f1}


def aggregate_of(metric: object) -> Aggregate:
    """The metric's ``aggregate`` (a corpus metric, :class:`optimizer.metrics.CorpusMetric`), else the mean."""
    return getattr(metric, "aggregate", mean_of_first)


def aggregate_name(metric: object) -> str:
    """What a summary records as its aggregate: the corpus metric's ``aggregate_name``, else "mean"."""
    return str(getattr(metric, "aggregate_name", "mean"))


def _matrix(rows: Sequence[Sequence[float]]) -> np.ndarray:
    data = np.asarray(rows, dtype=float)
    return data.reshape(len(data), -1) if len(data) else np.zeros((0, 1))


def bootstrap_ci(scores: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (scipy), seeded; a constant sample gives a zero-width CI."""
    data = np.asarray(scores, dtype=float)
    if len(data) < 2 or np.ptp(data) == 0:
        mean = float(data.mean()) if len(data) else 0.0
        return mean, mean
    res = stats.bootstrap((data,), np.mean, confidence_level=confidence, n_resamples=BOOTSTRAP_RESAMPLES,
                          method="percentile", rng=np.random.default_rng(BOOTSTRAP_SEED))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _resampled(n: int) -> np.ndarray:
    """The bootstrap's example indices: ``BOOTSTRAP_RESAMPLES`` draws of ``n`` with replacement, seeded."""
    return np.random.default_rng(BOOTSTRAP_SEED).integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def score_ci(rows: Sequence[Sequence[float]], aggregate: Aggregate = mean_of_first,
             confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of ``aggregate(rows)``, resampling examples; for the mean of one column it is
    exactly :func:`bootstrap_ci`."""
    data = _matrix(rows)
    if aggregate is mean_of_first and data.shape[1:] == (1,):
        return bootstrap_ci(data[:, 0], confidence)
    if len(data) < 2:
        value = aggregate(data) if len(data) else 0.0
        return value, value
    values = np.array([aggregate(data[idx]) for idx in _resampled(len(data))])
    return _interval(values, confidence)


def paired_difference(rows_a: Sequence[Sequence[float]], rows_b: Sequence[Sequence[float]],
                      aggregate: Aggregate = mean_of_first, confidence: float = 0.95
                      ) -> tuple[float, tuple[float, float]]:
    """``aggregate(a) - aggregate(b)`` over the same examples in the same order, and its paired bootstrap CI
    (the same resampled examples for both). Raises ValueError when the two score different numbers of
    examples."""
    return mean_paired_difference([(rows_a, rows_b)], aggregate, confidence)


def mean_paired_difference(pairs: Sequence[tuple[Sequence[Sequence[float]], Sequence[Sequence[float]]]],
                           aggregate: Aggregate = mean_of_first, confidence: float = 0.95
                           ) -> tuple[float, tuple[float, float]]:
    """The mean over ``pairs`` (runs on the same examples, one per seed, say) of ``aggregate(a) -
    aggregate(b)``, and its bootstrap CI resampling examples: one draw of example indices serves every pair,
    so the unit resampled is the example, never a seed. Raises ValueError unless every run has the same
    number of rows."""
    matrices = [(_matrix(a), _matrix(b)) for a, b in pairs]
    sizes = {len(m) for pair in matrices for m in pair}
    if len(sizes) > 1:
        raise ValueError(f"a paired difference needs the same examples (row counts {sorted(sizes)})")
    n = sizes.pop() if sizes else 0

    def diff(idx: np.ndarray | slice) -> float:
        return float(np.mean([aggregate(a[idx]) - aggregate(b[idx]) for a, b in matrices]))

    whole = diff(slice(None)) if n and matrices else 0.0
    if n < 2:
        return whole, (whole, whole)
    return whole, _interval(np.array([diff(idx) for idx in _resampled(n)]), confidence)


def mean_score_ci(runs: Sequence[Sequence[Sequence[float]]], aggregate: Aggregate = mean_of_first,
                  confidence: float = 0.95) -> tuple[float, float]:
    """The bootstrap CI of the mean over ``runs`` (seeds on the same examples) of ``aggregate``, resampling
    examples once for every run. Raises ValueError unless every run has the same number of rows."""
    matrices = [_matrix(run) for run in runs]
    if len({len(m) for m in matrices}) > 1:
        raise ValueError(f"runs score different examples (row counts {sorted({len(m) for m in matrices})})")
    n = len(matrices[0]) if matrices else 0
    if n < 2:
        value = float(np.mean([aggregate(m) for m in matrices])) if n else 0.0
        return value, value
    values = np.array([np.mean([aggregate(m[idx]) for m in matrices]) for idx in _resampled(n)])
    return _interval(values, confidence)
