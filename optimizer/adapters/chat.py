"""``ChatFormatAdapter``: DSPy's ChatAdapter prompt (``[[ ## field ## ]]`` sections), with its reply
constrained on local models like every other format. Unconstrained, the small local models ignore the
section markers and ramble to ``max_tokens`` (then DSPy falls back to a second, JSON call); constrained,
the reply is exactly::

    [[ ## sentiment ## ]]
    positive

    [[ ## completed ## ]]

with each value matching its field's pattern (the compact format's codecs: a label, a number, compact
JSON, one line of text). API models get DSPy's ChatAdapter unchanged (its JSON fallback included).
"""

from __future__ import annotations

import re
from typing import Any

import dspy

from optimizer.adapters.compact import codecs
from optimizer.models.base import REGEX_METADATA_KEY, capabilities_of

Signature = type[dspy.Signature]


def reply_regex(signature: Signature) -> str:
    """The regex of a whole ChatAdapter reply: each output's section with its value, then the end marker."""
    sections = "".join(rf"\[\[ ## {re.escape(name)} ## \]\]\n({codec.pattern})\n\n"
                       for name, codec in codecs(signature).items())
    return sections + r"\[\[ ## completed ## \]\]\n?"


class ChatFormatAdapter(dspy.ChatAdapter):
    """DSPy's ChatAdapter; on engines with the ``regex`` capability (local llama.cpp models) the reply is
    regex-constrained to its sections."""

    def _constrain(self, lm: Any, lm_kwargs: dict[str, Any], signature: Signature) -> dict[str, Any]:
        if not capabilities_of(lm).regex:
            return lm_kwargs
        metadata = {**(lm_kwargs.get("metadata") or {}), REGEX_METADATA_KEY: reply_regex(signature)}
        return {**lm_kwargs, "metadata": metadata}

    def __call__(self, lm: Any, lm_kwargs: dict[str, Any], signature: Signature, demos: list[dict[str, Any]],
                 inputs: dict[str, Any]) -> list[dict[str, Any]]:
        return super().__call__(lm, self._constrain(lm, lm_kwargs, signature), signature, demos, inputs)

    async def acall(self, lm: Any, lm_kwargs: dict[str, Any], signature: Signature,
                    demos: list[dict[str, Any]], inputs: dict[str, Any]) -> list[dict[str, Any]]:
        return await super().acall(lm, self._constrain(lm, lm_kwargs, signature), signature, demos, inputs)
