"""Copied spans: string outputs that must be copied from an input (an entity's text from its sentence).

Declared in the signature with one annotation, or inferred from the training data:

>>> class Entity(BaseModel):
...     text: Annotated[str, SpanOf("text")]   # a substring of the step's input field `text`
...     type: Literal["PER", "ORG", "LOC", "MISC"]

A :class:`SpanRule` says that every JSON string under the property ``key`` of a step's output is a span of the
input field ``source``. A step's rules are resolved once (declared, plus inferred where every training value
is a substring of one input) and stored in its :class:`~optimizer.space.variant.StepConfig` and artifact, so
``progopt run`` and serving decode exactly as the compile did. On a local model the rules travel with each
request (:func:`span_metadata`, the rule plus that input's text) and the decoder
(:mod:`optimizer.models.span_mask`) lets a span grow only into a substring of that text and end only at a
word boundary, never repeating an earlier span of the same output; API models get the schema alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

SPAN_SCHEMA_KEY = "x-progopt-span-of"  # in a declared field's JSON Schema: the input field it copies from
SPAN_WORDS_KEY = "x-progopt-span-max-words"
DEFAULT_MAX_WORDS = 8  # a declared span's length when neither it nor the training data says (lists must close)
SPAN_METADATA_KEY = "progopt_spans"  # in a request's metadata: [{"key", "source" (the input's text), "max_words"}]
MIN_INFERRED_VALUES = 5  # fewer training values than this never make a span rule


class SpanOf:
    """``Annotated[str, SpanOf("field")]``: the value is copied from the step's input field ``field``."""

    def __init__(self, source: str, max_words: int | None = None):
        self.source, self.max_words = source, max_words

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
                                     ) -> JsonSchemaValue:
        schema = handler(core_schema)
        words = {SPAN_WORDS_KEY: self.max_words} if self.max_words else {}
        return {**schema, SPAN_SCHEMA_KEY: self.source, **words}

    def __repr__(self) -> str:
        return f"SpanOf({self.source!r}, max_words={self.max_words})"


class SpanRule(BaseModel):
    """Every JSON string under property ``key`` of the output is a span of input field ``source``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1, max_length=256)
    source: str = Field(min_length=1, max_length=256)
    max_words: int = Field(DEFAULT_MAX_WORDS, ge=1, le=256, description="longest value, in words: a list of "
                           "spans must close within the model's token limit")
    inferred: bool = Field(False, description="found in the training data rather than declared")


def _walk(schema: Any, defs: Mapping[str, Any], seen: frozenset[str] = frozenset()) -> Iterable[tuple[str, Any]]:
    """(property name, property schema) of every object property in ``schema``, nested ones included."""
    if isinstance(schema, list):
        for item in schema:
            yield from _walk(item, defs, seen)
        return
    if not isinstance(schema, dict):
        return
    ref = schema.get("$ref", "")
    if ref.startswith("#/$defs/") and ref not in seen:
        yield from _walk(defs.get(ref.rpartition("/")[2]), defs, seen | {ref})
    for name, sub in (schema.get("properties") or {}).items():
        yield name, sub
        yield from _walk(sub, defs, seen)
    for key in ("items", "anyOf", "allOf", "oneOf", "additionalProperties"):
        if key in schema:
            yield from _walk(schema[key], defs, seen)


def _is_string(schema: Any) -> bool:
    return isinstance(schema, dict) and (schema.get("type") == "string" or any(
        isinstance(s, dict) and s.get("type") == "string" for s in schema.get("anyOf", []))) and "enum" not in schema


def output_schemas(signature: Any) -> dict[str, dict[str, Any]]:
    """Each output field's JSON Schema (pydantic's), by field name."""
    from typing import Annotated

    from pydantic import TypeAdapter

    def annotated(field: Any) -> Any:  # pydantic keeps a field's Annotated markers in its metadata
        markers = [m for m in field.metadata if isinstance(m, SpanOf)]
        return Annotated[(field.annotation, *markers)] if markers else field.annotation

    return {name: TypeAdapter(annotated(f)).json_schema() for name, f in signature.output_fields.items()}


def declared_spans(signature: Any) -> list[SpanRule]:
    """The rules the signature's output types declare with :class:`SpanOf` (their sources must be inputs); a
    top-level string field's key is its name (decoded as a span where its value is a JSON string: the json
    format; the compact and chat formats write it as plain text, unrestricted)."""
    rules: dict[str, SpanRule] = {}
    for field, schema in output_schemas(signature).items():
        for key, sub in [(field, schema), *_walk(schema, schema.get("$defs", {}))]:
            source = sub.get(SPAN_SCHEMA_KEY) if isinstance(sub, dict) else None
            if source is None:
                continue
            if source not in signature.input_fields:
                raise ValueError(f"output field {field!r}: {key!r} is declared a span of {source!r}, which is not "
                                 f"an input field (inputs: {', '.join(signature.input_fields)})")
            rules[key] = SpanRule(key=key, source=source, max_words=sub.get(SPAN_WORDS_KEY) or DEFAULT_MAX_WORDS)
    return list(rules.values())


def _values(value: Any, key: str) -> Iterable[Any]:
    """Every value under property ``key`` in a (JSON-like or pydantic) output value."""
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key:
                yield v
            yield from _values(v, key)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _values(item, key)


def inferred_spans(signature: Any, examples: Sequence[Any]) -> list[SpanRule]:
    """String properties of nested output objects whose every training value (at least
    :data:`MIN_INFERRED_VALUES`) is a non-empty substring of one input field of its own example; a
    top-level string output is left alone (a free answer may quote its input by chance)."""
    candidates = {key for schema in output_schemas(signature).values()
                  for key, sub in _walk(schema, schema.get("$defs", {})) if _is_string(sub)}
    rules = []
    for key in sorted(candidates):
        for source in signature.input_fields:
            words = [_copied_words(ex, source, key, signature.output_fields) for ex in examples]
            flat = [w for ws in words for w in ws]
            if flat and None not in flat and len(flat) >= MIN_INFERRED_VALUES:
                # the longest value seen, with one word to spare
                rules.append(SpanRule(key=key, source=source, max_words=max(flat) + 1, inferred=True))  # type: ignore[arg-type]
                break
    return rules


def _copied_words(example: Any, source: str, key: str, outputs: Iterable[str]) -> list[int | None]:
    """The word count of each value under ``key`` in the example's outputs; None for one not copied."""
    text = str(example.get(source) or "")
    return [len(v.split()) if isinstance(v, str) and v and v in text else None
            for field in outputs for v in _values(example.get(field), key)]


def step_spans(signature: Any, examples: Sequence[Any]) -> list[SpanRule]:
    """A step's rules: the declared ones, then inferred ones for keys not declared."""
    declared = declared_spans(signature)
    keys = {r.key for r in declared}
    return declared + [r for r in inferred_spans(signature, examples) if r.key not in keys]


def span_metadata(rules: Sequence[SpanRule], inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What a request carries for the decoder: each rule's key, its input's text and its longest value."""
    return [{"key": r.key, "source": str(inputs.get(r.source) or ""), "max_words": r.max_words} for r in rules]
