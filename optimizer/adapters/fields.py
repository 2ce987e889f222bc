"""How one field looks in compact text: the regex its value must match, how a value is written, and
how generated text is read back into a typed value.

Every value fits on one line, so a completion splits into fields at newlines.

>>> codec = FieldCodec.of(Literal["negative", "positive"])
>>> codec.pattern, codec.render("positive"), codec.parse("positive")
('negative|positive', 'positive', 'positive')
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal, get_args, get_origin

from dspy.adapters.utils import get_annotation_name
from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from optimizer.models.constrain import WHITESPACE, bound_lists

# Free text: one line, ended by the model's own newline; its length is bounded by max_tokens (a
# truncation is recorded). A character bound is too expensive to compile: `[^\n]{0,299}` took 11 s
# (SmolLM2) and 150 s (Gemma's 262k vocabulary) to build, against 0.2 s and 4 s unbounded (measured on
# the 2 shared cores at load ~10).
TEXT_PATTERN = r"[^\n ][^\n]*"
# Bounded digits: a looping small model otherwise writes digits until max_tokens.
INT_PATTERN = r"-?(0|[1-9][0-9]{0,8})"
FLOAT_PATTERN = r"-?(0|[1-9][0-9]{0,8})(\.[0-9]{1,6})?([eE][+-]?[0-9]{1,2})?"
BOOL_PATTERN = "true|false"
SCALAR_PATTERNS: dict[Any, str] = {int: INT_PATTERN, float: FLOAT_PATTERN, bool: BOOL_PATTERN}


class FieldValueError(ValueError):
    """Text that is not a valid value of the field's type; keeps the text."""

    def __init__(self, text: str, annotation: Any, reason: str):
        self.text, self.annotation = text, annotation
        super().__init__(f"{text!r} is not a valid {annotation!r}: {reason}")


def _choices(annotation: Any) -> dict[str, Any] | None:
    """Label text -> value for a Literal or Enum annotation; None for any other type."""
    if get_origin(annotation) is Literal:
        return {str(v.value if isinstance(v, enum.Enum) else v): v for v in get_args(annotation)}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {str(member.value): member for member in annotation}
    return None


@cache
def type_adapter(annotation: Any) -> TypeAdapter:
    return TypeAdapter(annotation)


@cache
def json_pattern(annotation: Any) -> str:
    """The compact-JSON regex of ``annotation``'s JSON schema (Outlines' builder, one optional space)."""
    from outlines_core.json_schema import build_regex_from_schema

    schema = json.dumps(bound_lists(type_adapter(annotation).json_schema()))
    return build_regex_from_schema(schema, whitespace_pattern=WHITESPACE)


@dataclass(frozen=True)
class FieldCodec:
    """An output field's compact form. ``kind``: "text" (one line, written as is), "choice" (one
    label of a Literal/Enum) or "json" (numbers, booleans and structured values as compact JSON)."""

    kind: Literal["text", "choice", "json"]
    annotation: Any
    pattern: str
    choices: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, annotation: Any) -> FieldCodec:
        if annotation is str:
            return cls("text", str, TEXT_PATTERN)
        choices = _choices(annotation)
        if choices is not None:
            if any("\n" in label for label in choices):
                raise ValueError(f"labels of {annotation!r} must not contain newlines")
            return cls("choice", annotation, "|".join(map(re.escape, choices)), choices)
        if annotation in SCALAR_PATTERNS:
            return cls("json", annotation, SCALAR_PATTERNS[annotation])
        return cls("json", annotation, json_pattern(annotation))

    @property
    def hint(self) -> str:
        """A short description of the value, for prompts that cannot constrain it (API models)."""
        if self.kind == "choice":
            return "one of: " + ", ".join(self.choices)
        return get_annotation_name(self.annotation)

    @property
    def adapter(self) -> TypeAdapter:
        return type_adapter(self.annotation)

    def render(self, value: Any) -> str:
        """``value`` as the model should write it (demos): exactly what :meth:`parse` reads back."""
        if self.kind == "text":
            return " ".join(str(value).split())
        if self.kind == "choice":
            value = self.adapter.validate_python(value)
            return next(label for label, v in self.choices.items() if v == value)
        return self.adapter.dump_json(self.adapter.validate_python(value)).decode()

    def parse(self, text: str) -> Any:
        """The typed value of a generated ``text``, validated by pydantic."""
        text = text.strip()
        try:
            if self.kind == "text":
                return text
            if self.kind == "choice":
                if text not in self.choices:
                    raise FieldValueError(text, self.annotation, f"not one of {sorted(self.choices)}")
                return self.choices[text]
            return self.adapter.validate_json(text)
        except ValidationError as exc:
            raise FieldValueError(text, self.annotation, str(exc)) from exc


def render_input(value: Any) -> str:
    """An input value on the page: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, enum.Enum):
        return str(value.value)
    return json.dumps(to_jsonable_python(value), ensure_ascii=False)
