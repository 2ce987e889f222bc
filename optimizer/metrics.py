"""Built-in metrics with DSPy's signature ``metric(example, prediction, trace=None) -> float``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

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


def entity_f1(field: str = "entities") -> Metric:
    """Entity-level F1 over (text, type) pairs, as in CoNLL-2003 scoring; empty vs empty is 1.0."""

    def metric(example: Any, prediction: Any, trace: Any = None) -> float:
        gold, pred = _entity_set(_gold(example, field)), _entity_set(_value(prediction, field))
        if not gold and not pred:
            return 1.0
        tp = len(gold & pred)
        if tp == 0:
            return 0.0
        precision, recall = tp / len(pred), tp / len(gold)
        return 2 * precision * recall / (precision + recall)

    metric.__name__ = f"entity_f1_{field}"
    return metric


BUILTIN: dict[str, Callable[[str], Metric]] = {"exact_match": exact_match, "entity_f1": entity_f1}
