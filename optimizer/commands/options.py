"""Argument types that validate ``progopt`` options at parse time, before any data is read or stored.

Each raises ``argparse.ArgumentTypeError``; the CLI's error boundary prints it as ``progopt: <what>, <where>``."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from optimizer.models.spec import known_model_name
from optimizer.space.variant import strategy_settings


def _number(kind: type, low: float, inclusive: bool) -> Callable[[str], float]:
    """An argparse type: a ``kind`` number above ``low`` (or equal to it when ``inclusive``), never NaN."""
    bound = f">= {low:g}" if inclusive else f"> {low:g}"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            whole = "whole " if kind is int else ""
            raise argparse.ArgumentTypeError(f"expected a {whole}number (got {text!r})") from None
        if value != value or value < low or (value == low and not inclusive):  # NaN too
            raise argparse.ArgumentTypeError(f"must be {bound} (got {text})")
        return value

    return parse


positive_int = _number(int, 0, inclusive=False)
count = _number(int, 0, inclusive=True)
positive_float = _number(float, 0.0, inclusive=False)


def share(text: str) -> float:
    """A fraction strictly between 0 and 1."""
    value = positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be < 1 (got {text})")
    return value


def strategy(text: str) -> str:
    """'direct', 'cot', 'scK' with K >= 2, 'score', 'score-cc' or 'score-bc'."""
    try:
        strategy_settings(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def model_name(text: str) -> str:
    """An embedded model, or a LiteLLM ``provider/model`` string whose provider LiteLLM knows."""
    try:
        return known_model_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
