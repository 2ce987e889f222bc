"""Built-in metrics with DSPy's signature ``metric(example, prediction, trace=None) -> float``; a
:class:`CorpusMetric` also says how its examples combine (micro F1)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from optimizer.statistics import micro_f1

Metric = Callable[..., float]


def _value(obj: Any, field: str) -> Any:
    return obj.get(field) if isinstance(obj, dict) else getattr(obj, field, None)


def _gold(example: Any, field: str) -> Any:
    """The example's label; a missing label is a data error, never a silent match."""
    value = _value(example, field)
    if value is None:
        raise KeyError(f"example has no gold value for field {field!r}: {example}")
    return value


def _norm(value: Any) -> Any:
    if hasattr(value, "value") and not isinstance(value, str):  # Enum
        value = value.value
    return value.strip().lower() if isinstance(value, str) else value


def exact_match(field: str) -> Metric:
    """1.0 when ``prediction.<field>`` equals ``example.<field>`` (case- and space-insensitive)."""

    def metric(example: Any, prediction: Any, trace: Any = None) -> float:
        return float(_norm(_gold(example, field)) == _norm(_value(prediction, field)))

    metric.__name__ = f"exact_match_{field}"
    return metric


def _entity_set(entities: Iterable[Any] | None) -> set[tuple[str, str]]:
    out = set()
    for ent in entities or []:
        text, kind = (_value(ent, "text"), _value(ent, "type"))
        if text is not None and kind is not None:
            out.add((str(_norm(text)), str(_norm(kind))))
    return out


class CorpusMetric:
    """A metric whose examples combine at the corpus level, as CoNLL scores entities: each example gives a row
    of statistics (``statistics(example, prediction)``), and ``aggregate`` turns the rows of a data slice
    into its score. Calling it gives DSPy's per-example float (what bootstrapping and DSPy's own optimizers
    use); :mod:`optimizer.statistics`, the search, reports, sweeps and MLflow use the aggregate."""

    def __init__(self, name: str, statistics: Callable[[Any, Any], Sequence[float]],
                 per_example: Callable[[Sequence[float]], float], aggregate: Callable[[np.ndarray], float],
                 aggregate_name: str = "custom"):
        self.__name__, self.aggregate_name = name, aggregate_name
        self.statistics, self._per_example, self.aggregate = statistics, per_example, aggregate

    def __call__(self, example: Any, prediction: Any, trace: Any = None) -> float:
        return self._per_example(self.statistics(example, prediction))

    def __repr__(self) -> str:
        return f"CorpusMetric({self.__name__})"


def _f1(tp: float, fp: float, fn: float, empty: float) -> float:
    """F1 from counts; ``empty`` when there is nothing to find and nothing was found."""
    if tp + fp + fn == 0:
        return empty
    return 2 * tp / (2 * tp + fp + fn)


def _entity_counts(field: str) -> Callable[[Any, Any], tuple[float, float, float]]:
    def counts(example: Any, prediction: Any) -> tuple[float, float, float]:
        gold, pred = _entity_set(_gold(example, field)), _entity_set(_value(prediction, field))
        tp = len(gold & pred)
        return float(tp), float(len(pred) - tp), float(len(gold) - tp)

    return counts


def entity_f1(field: str = "entities") -> CorpusMetric:
    """Micro F1 over (text, type) pairs, as CoNLL-2003 scores it: true positives, false positives and false
    negatives summed over the slice, then F1 (a program that extracts nothing scores 0). Per example (DSPy's
    float) it is that example's F1, 1.0 when there is nothing to find and nothing was found."""
    return CorpusMetric(f"entity_f1_{field}", _entity_counts(field), lambda row: _f1(*row, empty=1.0),
                        micro_f1, "micro_f1")


def entity_f1_mean(field: str = "entities") -> Metric:
    """The mean of per-sentence entity F1 (empty vs empty is 1.0): the metric before micro F1, kept for
    comparison. It rewards extracting nothing on sentences without entities."""
    counts = _entity_counts(field)

    def metric(example: Any, prediction: Any, trace: Any = None) -> float:
        return _f1(*counts(example, prediction), empty=1.0)

    metric.__name__ = f"entity_f1_mean_{field}"
    return metric


BUILTIN: dict[str, Callable[[str], Metric]] = {"exact_match": exact_match, "entity_f1": entity_f1,
                                              "entity_f1_mean": entity_f1_mean}
