"""Constrained decoding with outlines_core: one compiled ``Index`` per (model file, constraint).

A constraint is a JSON Schema (DSPy's JSONAdapter ``response_format``) or a regular expression (the compact
and chat formats). Lifecycle:

:class:`ConstraintCompiler`, one per model file and process, converts the tokenizer's vocabulary once
(~1 s on Gemma's 262k tokens) and compiles each constraint once into an immutable ``Index``, shared by
every instance (KV slot) of that file. Each call walks the index with its own ``Guide``
(:mod:`optimizer.models.decode`).

Compiling walks every vocabulary token from every automaton state, so its cost is states × vocabulary.
Most constraints (labels, JSON keys, numbers) can only ever match a few dozen characters: the compiler
first finds that alphabet exactly (an index over one-character tokens) and then compiles over the tokens
made only of those characters, which yields the same allowed tokens in every state (a token containing
any other character can never be allowed). Free-text fields allow nearly every character: those
constraints compile over the whole vocabulary.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any, Literal

WHITESPACE = r"[ ]?"  # one optional space between JSON tokens: no whitespace runs from small models
# Lists without their own maxItems get this one, in every format: small models repeat list items until
# max_tokens (SmolLM2 wrote '["tree", "tree", ...' 100+ times; unbounded, SmolLM2's CoNLL-2003 entity lists
# in the json format ran to max_tokens on 12 of 16 inputs). Bounding list[Entity] to 8 items made Gemma's
# processor build about 3x slower (29 s against 11 s at the same load), once per schema.
LIST_MAX_ITEMS = 8
# Above this share of the vocabulary's characters a filtered compile saves too little to pay for the filter.
FILTER_MAX_ALPHABET_SHARE = 0.5


def bound_lists(schema: Any) -> Any:
    """``schema`` with ``maxItems`` set to :data:`LIST_MAX_ITEMS` on every array that has none."""
    if isinstance(schema, list):
        return [bound_lists(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: bound_lists(v) for k, v in schema.items()}
    if out.get("type") == "array":
        out.setdefault("maxItems", LIST_MAX_ITEMS)
    return out


@dataclass(frozen=True)
class Constraint:
    """What the output must match: ``kind`` is "json_schema" or "regex"; ``pattern`` its text."""

    kind: Literal["json_schema", "regex"]
    pattern: str

    @classmethod
    def from_response_format(cls, response_format: dict[str, Any] | None) -> Constraint | None:
        """Read an OpenAI-style ``response_format`` (``json_schema`` or progopt's ``regex`` type); a JSON
        Schema's unbounded arrays get :data:`LIST_MAX_ITEMS` (:func:`bound_lists`)."""
        if not response_format:
            return None
        kind = response_format.get("type")
        if kind == "json_schema":
            body = response_format.get("json_schema", response_format)
            schema = body.get("schema", body)
            return cls("json_schema", json.dumps(bound_lists(schema), sort_keys=True))
        if kind == "regex":
            return cls("regex", response_format["pattern"])
        if kind == "json_object":
            return cls("json_schema", json.dumps({"type": "object"}))
        return None

    def regex(self) -> str:
        """The regular expression the output must match (a JSON Schema through outlines_core)."""
        if self.kind == "regex":
            return self.pattern
        from outlines_core.json_schema import build_regex_from_schema

        return build_regex_from_schema(self.pattern, WHITESPACE)


class ConstraintCompiler:
    """The outlines_core vocabulary of one model file and the ``Index`` of every constraint compiled for
    it. Thread-safe; built from any loaded instance of the file (the vocabulary is the file's)."""

    def __init__(self, llm: Any):
        from outlines.models.llamacpp import LlamaCppTokenizer
        from outlines_core import Vocabulary

        tokenizer = LlamaCppTokenizer(llm)
        pieces: dict[str, list[int]] = {}  # as outlines' OutlinesCoreBackend builds it: text -> token ids
        for token, token_id in tokenizer.vocabulary.items():
            pieces.setdefault(tokenizer.convert_token_to_string(token), []).append(token_id)
        pieces.pop(tokenizer.convert_token_to_string(tokenizer.eos_token), None)
        self.eos_token_id: int = tokenizer.eos_token_id
        self._pieces = pieces
        self._vocabulary = Vocabulary(self.eos_token_id, pieces)
        self._chars = sorted({char for piece in pieces for char in piece})
        self._probe: Any = None  # the one-character vocabulary, built on the first filtered compile
        self._indexes: dict[Constraint, tuple[Any, dict[int, int | None]]] = {}
        self._lock = threading.Lock()
        self._spans: Any = None  # span decoding's view of the vocabulary (models.span_mask), built on first use

    def span_vocabulary(self) -> Any:
        """The vocabulary as :mod:`optimizer.models.span_mask` reads it (built once)."""
        from optimizer.models.span_mask import Vocabulary

        with self._lock:
            if self._spans is None:
                self._spans = Vocabulary(self._pieces)
            return self._spans

    def index(self, constraint: Constraint) -> tuple[Any, dict[int, int | None], bool]:
        """The compiled ``Index`` of ``constraint``, its forced-token table (state -> the only allowed
        token, or None; filled as decoding visits states), and whether this call compiled it."""
        with self._lock:
            entry = self._indexes.get(constraint)
            if entry is not None:
                return (*entry, False)
            from outlines_core import Index

            regex = constraint.regex()
            entry = self._indexes[constraint] = (Index(regex, self._vocabulary_for(regex)), {})
            return (*entry, True)

    def alphabet(self, regex: str) -> set[str]:
        """Every character that can occur in a match of ``regex`` (among the vocabulary's characters)."""
        from outlines_core import Index, Vocabulary

        if self._probe is None:
            first = self.eos_token_id + 1  # ids only need to differ from the EOS id
            self._probe = Vocabulary(self.eos_token_id, {c: [first + i] for i, c in enumerate(self._chars)})
        first = self.eos_token_id + 1
        allowed = {t for moves in Index(regex, self._probe).get_transitions().values() for t in moves}
        return {self._chars[t - first] for t in allowed if t != self.eos_token_id}

    def _vocabulary_for(self, regex: str) -> Any:
        """The whole vocabulary, or only the tokens spelled with ``regex``'s alphabet when that is small."""
        from outlines_core import Vocabulary

        alphabet = self.alphabet(regex)
        if len(alphabet) > FILTER_MAX_ALPHABET_SHARE * len(self._chars):
            return self._vocabulary
        spelled = re.compile("[" + "".join(re.escape(c) for c in sorted(alphabet)) + "]*" if alphabet else "").fullmatch
        return Vocabulary(self.eos_token_id, {p: ids for p, ids in self._pieces.items() if spelled(p)})
