"""Prompt formats beyond DSPy's own. Importing this package registers ``CompactAdapter`` as the "compact"
format and ``ChatFormatAdapter`` (DSPy's ChatAdapter, constrained on local models) as the "chat" format of
:func:`optimizer.space.build.make_adapter`, and the compact format's label scorer (``score`` strategies)."""

from optimizer.adapters.chat import ChatFormatAdapter
from optimizer.adapters.compact import CompactAdapter
from optimizer.adapters.scoring import score_compact

__all__ = ["ChatFormatAdapter", "CompactAdapter", "score_compact"]
