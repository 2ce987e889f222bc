"""Prompt formats beyond DSPy's own. Importing this package registers ``CompactAdapter`` as the
"compact" format of :func:`optimizer.space.build.make_adapter`."""

from optimizer.adapters.compact import CompactAdapter

__all__ = ["CompactAdapter"]
