"""Compiled Outlines logits processors, one per (model, constraint), built once and reused.

A constraint is a JSON Schema (DSPy's JSONAdapter ``response_format``) or a regular expression (the
compact adapter). Building is expensive (Gemma's 262k vocabulary: ~0.7 s); applying is cheap. Processors
are stateful, so a cached one is reset before each call, under the model's lock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

WHITESPACE = r"[ ]?"  # one optional space between JSON tokens: no whitespace runs from small models


@dataclass(frozen=True)
class Constraint:
    """What the output must match: ``kind`` is "json_schema" or "regex"; ``pattern`` its text."""

    kind: Literal["json_schema", "regex"]
    pattern: str

    @classmethod
    def from_response_format(cls, response_format: dict[str, Any] | None) -> Constraint | None:
        """Read an OpenAI-style ``response_format`` (``json_schema`` or progopt's ``regex`` type)."""
        if not response_format:
            return None
        kind = response_format.get("type")
        if kind == "json_schema":
            body = response_format.get("json_schema", response_format)
            schema = body.get("schema", body)
            return cls("json_schema", json.dumps(schema, sort_keys=True))
        if kind == "regex":
            return cls("regex", response_format["pattern"])
        if kind == "json_object":
            return cls("json_schema", json.dumps({"type": "object"}))
        return None


class ProcessorCache:
    """Builds and keeps one logits processor per constraint for one Outlines model."""

    def __init__(self, outlines_model: Any):
        from outlines.backends.outlines_core import OutlinesCoreBackend

        self._backend = OutlinesCoreBackend(outlines_model)  # the vocabulary, built once per model (~1 s on Gemma)
        self._processors: dict[Constraint, Any] = {}

    def get(self, constraint: Constraint) -> tuple[Any, bool]:
        """The processor for ``constraint``, reset and ready; and whether it was built by this call."""
        proc = self._processors.get(constraint)
        built = proc is None
        if built:
            if constraint.kind == "json_schema":
                proc = self._backend.get_json_schema_logits_processor(constraint.pattern, WHITESPACE)
            else:
                proc = self._backend.get_regex_logits_processor(constraint.pattern)
            self._processors[constraint] = proc
        proc.reset()
        return proc, built
