"""Prompt formats: DSPy's JSON one, and beyond it ``CompactAdapter`` ("compact") and
``ChatFormatAdapter`` ("chat": DSPy's ChatAdapter, constrained on local models). :data:`FORMATS` is the
fixed table of format name -> adapter class; nothing registers itself at import."""

from collections.abc import Callable, Mapping
from types import MappingProxyType

import dspy

from optimizer.adapters.chat import ChatFormatAdapter
from optimizer.adapters.compact import CompactAdapter

FORMATS: Mapping[str, Callable[[], dspy.Adapter]] = MappingProxyType(
    {"json": dspy.JSONAdapter, "chat": ChatFormatAdapter, "compact": CompactAdapter})


def make_adapter(fmt: str) -> dspy.Adapter:
    """A new adapter for the prompt format ``fmt`` (ValueError for an unknown one)."""
    try:
        return FORMATS[fmt]()
    except KeyError:
        raise ValueError(f"unknown prompt format {fmt!r}; known: {sorted(FORMATS)}") from None


__all__ = ["FORMATS", "ChatFormatAdapter", "CompactAdapter", "make_adapter"]
