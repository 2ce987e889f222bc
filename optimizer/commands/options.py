"""Argument types that validate ``progopt`` options at parse time, before any data is read or stored.

Each raises ``argparse.ArgumentTypeError``; the CLI's error boundary prints it as ``progopt: <what>, <where>``."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from optimizer.models.spec import EMBEDDED_SPECS
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


def strategy(text: str) -> str:
    """'direct', 'cot' or 'scK' with K >= 2."""
    try:
        strategy_settings(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def model_name(text: str) -> str:
    """An embedded model, or a LiteLLM ``provider/model`` string whose provider LiteLLM knows."""
    if text in EMBEDDED_SPECS:
        return text
    provider, sep, model = text.partition("/")
    if sep and model and provider != "local":
        from litellm import provider_list

        if provider in {str(getattr(p, "value", p)) for p in provider_list}:
            return text
    raise argparse.ArgumentTypeError(
        f"unknown model {text!r}: use an embedded model ({', '.join(EMBEDDED_SPECS)}) or a LiteLLM "
        "provider/model string such as openai/gpt-4o-mini")
