"""``CompactAdapter``: the prompt format for very small local models. A short completion-style prompt
(the instruction once, then ``Field: value`` blocks) and one regex for the whole output.

A base model (Gemma) gets the text verbatim (the engine's raw flag), ending in the first output prefix::

    Classify the sentiment of a movie review sentence.

    Sentence: a gorgeous , witty , seductive movie .
    Sentiment: positive

    Sentence: the plot is nothing but boilerplate clichés
    Sentiment:

and decodes ``' (negative|positive)\\n?'``. A chat model (SmolLM2) gets the same text without the final
prefix as its user turn, inside its chat template, and decodes ``'Sentiment: (negative|positive)\\n?'``
(``chat_template=False`` sends it raw instead). Further output fields continue on the next lines
(``\\nReason: ...``). API models get the lines as chat messages, the outputs' JSON schema as
``response_format``, and answer with a JSON object.

>>> program = build_program(Sentiment(), {"classify": StepConfig(..., format="compact")}, pool.lm)
"""

from __future__ import annotations

import json
import re
from contextvars import ContextVar
from functools import cache
from typing import Any, Literal

import dspy
import json_repair
import pydantic
from dspy.utils.exceptions import AdapterParseError

from optimizer.adapters.fields import FieldCodec, FieldValueError, render_input
from optimizer.models.base import RAW_METADATA_KEY, REGEX_METADATA_KEY, capabilities_of

Signature = type[dspy.Signature]

Delivery = Literal["raw", "chat", "json"]
# How the current call is delivered: raw completion text, the user turn of a chat template, or JSON (API).
_delivery: ContextVar[Delivery] = ContextVar("progopt_compact_delivery", default="raw")


def label(name: str, field: Any) -> str:
    """The human-readable prefix of a field, without its colon: DSPy's ``prefix`` ("Sentence:")."""
    prefix = (field.json_schema_extra or {}).get("prefix") or name
    return prefix.strip().rstrip(":").strip()


def instruction_line(signature: Signature) -> str:
    return " ".join(signature.instructions.split())


@cache
def _codecs(outputs: tuple[tuple[str, Any], ...]) -> dict[str, FieldCodec]:
    return {name: FieldCodec.of(annotation) for name, annotation in outputs}


def codecs(signature: Signature) -> dict[str, FieldCodec]:
    """One codec per output field, in order."""
    return _codecs(tuple((name, f.annotation) for name, f in signature.output_fields.items()))


def output_regex(signature: Signature, *, first_prefix: bool = False) -> str:
    """The regex of everything after the prompt: the first value (after its prefix when ``first_prefix``:
    the prompt did not end with it), then ``\\nPrefix: value`` per further field, then an optional newline
    (the model's natural end of line ends the generation)."""
    parts = []
    for i, (name, codec) in enumerate(codecs(signature).items()):
        head = re.escape(label(name, signature.output_fields[name])) + ":"
        if i > 0:
            head = r"\n" + head
        elif not first_prefix:
            head = ""
        parts.append(f"{head} ({codec.pattern})")
    return "".join(parts) + r"\n?"


def _lines(fields: dict[str, Any], values: dict[str, Any], render: Any) -> list[str]:
    return [f"{label(name, f)}: {render(name, values[name])}" for name, f in fields.items() if name in values]


def complete_demos(signature: Signature, demos: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The demos that give every field (a partial demo would teach a partial answer); an output may be
    None when its type allows it."""
    return [d for d in demos if all(name in d for name in signature.fields)
            and all(d[name] is not None for name in signature.input_fields)]


def render_prompt(signature: Signature, demos: list[dict[str, Any]], inputs: dict[str, Any], *,
                  answer_prefix: bool = True) -> str:
    """The compact prompt: instruction, complete demos, the inputs, and (``answer_prefix``) the first
    output's prefix."""
    outs = codecs(signature)

    def show(name: str, value: Any) -> str:
        return outs[name].render(value) if name in outs else render_input(value)

    blocks = [instruction_line(signature)]
    blocks.extend("\n".join(_lines(signature.fields, demo, show)) for demo in complete_demos(signature, demos))
    first = label(*next(iter(signature.output_fields.items())))
    blocks.append("\n".join(_lines(signature.input_fields, inputs, show) + [f"{first}:"] * answer_prefix))
    return "\n\n".join(blocks)


@cache
def _outputs_model(outputs: tuple[tuple[str, Any], ...]) -> type[pydantic.BaseModel]:
    fields: dict[str, Any] = {name: (annotation, ...) for name, annotation in outputs}
    return pydantic.create_model("Outputs", __config__=pydantic.ConfigDict(extra="forbid"), **fields)


def outputs_model(signature: Signature) -> type[pydantic.BaseModel]:
    """The output fields as one pydantic model: the JSON schema API models are asked to follow."""
    return _outputs_model(tuple((name, f.annotation) for name, f in signature.output_fields.items()))


class CompactAdapter(dspy.Adapter):
    """Compact ``Field: value`` prompts; per-field regex-constrained output on local models, JSON on API
    models. Parsing goes through ``Adapter.__call__``, so DSPy's parse callbacks (and progopt's validity
    records) see every call. Safe to share across threads: per-call state lives in a context variable.

    ``chat_template``: whether a local model that has a chat template gets the prompt as its user turn
    (default) or as raw completion text."""

    def __init__(self, *, chat_template: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self.chat_template = chat_template

    def _prepare(self, lm: Any, lm_kwargs: dict[str, Any], signature: Signature) -> tuple[dict[str, Any], Delivery]:
        capabilities = capabilities_of(lm)
        if not capabilities.regex:
            return {**lm_kwargs, "response_format": outputs_model(signature)}, "json"
        metadata = dict(lm_kwargs.get("metadata") or {})
        if lm.engine.spec.chat and self.chat_template or not capabilities.raw_prompt:
            metadata[REGEX_METADATA_KEY] = output_regex(signature, first_prefix=True)
            return {**lm_kwargs, "metadata": metadata}, "chat"
        metadata.update({REGEX_METADATA_KEY: output_regex(signature), RAW_METADATA_KEY: True})
        return {**lm_kwargs, "metadata": metadata}, "raw"

    def __call__(self, lm: Any, lm_kwargs: dict[str, Any], signature: Signature, demos: list[dict[str, Any]],
                 inputs: dict[str, Any]) -> list[dict[str, Any]]:
        lm_kwargs, delivery = self._prepare(lm, lm_kwargs, signature)
        token = _delivery.set(delivery)
        try:
            return super().__call__(lm, lm_kwargs, signature, demos, inputs)
        finally:
            _delivery.reset(token)

    async def acall(self, lm: Any, lm_kwargs: dict[str, Any], signature: Signature,
                    demos: list[dict[str, Any]], inputs: dict[str, Any]) -> list[dict[str, Any]]:
        lm_kwargs, delivery = self._prepare(lm, lm_kwargs, signature)
        token = _delivery.set(delivery)
        try:
            return await super().acall(lm, lm_kwargs, signature, demos, inputs)
        finally:
            _delivery.reset(token)

    def format(self, signature: Signature, demos: list[dict[str, Any]],
               inputs: dict[str, Any]) -> list[dict[str, Any]]:
        delivery = _delivery.get()
        if delivery != "json":
            text = render_prompt(signature, demos, inputs, answer_prefix=delivery == "raw")
            return [{"role": "user", "content": text}]
        keys = "; ".join(f"{name} ({codec.hint})" for name, codec in codecs(signature).items())
        messages = [{"role": "system", "content": f"{instruction_line(signature)}\nReply with a JSON object "
                                                  f"with the keys: {keys}."}]
        for demo in complete_demos(signature, demos):
            outputs = outputs_model(signature)(**{name: demo[name] for name in signature.output_fields})
            messages.append({"role": "user", "content": self._input_lines(signature, demo)})
            messages.append({"role": "assistant", "content": outputs.model_dump_json()})
        messages.append({"role": "user", "content": self._input_lines(signature, inputs)})
        return messages

    @staticmethod
    def _input_lines(signature: Signature, values: dict[str, Any]) -> str:
        return "\n".join(_lines(signature.input_fields, values, lambda _, v: render_input(v)))

    def parse(self, signature: Signature, completion: str) -> dict[str, Any]:
        try:
            delivery = _delivery.get()
            if delivery == "json":
                return self._parse_json(signature, completion)
            if delivery == "raw":  # the prompt ended with the first prefix: put it back
                completion = label(*next(iter(signature.output_fields.items()))) + ":" + completion
            return self._parse_lines(signature, completion)
        except (FieldValueError, pydantic.ValidationError, ValueError) as exc:
            raise AdapterParseError(adapter_name=type(self).__name__, signature=signature,
                                    lm_response=completion, message=str(exc)) from exc

    @staticmethod
    def _parse_lines(signature: Signature, completion: str) -> dict[str, Any]:
        lines = completion.rstrip("\n").split("\n")
        out = codecs(signature)
        if len(lines) != len(out):
            raise ValueError(f"expected {len(out)} output line(s), got {len(lines)}")
        values = {}
        for line, (name, codec) in zip(lines, out.items(), strict=True):
            head = label(name, signature.output_fields[name]) + ":"
            if not line.startswith(head):
                raise ValueError(f"{line[:80]!r} should start with {head!r}")
            values[name] = codec.parse(line[len(head):])
        return values

    @staticmethod
    def _parse_json(signature: Signature, completion: str) -> dict[str, Any]:
        obj = json_repair.loads(completion)
        if not isinstance(obj, dict):
            raise ValueError(f"expected a JSON object, got {json.dumps(obj)[:100]}")
        missing = [name for name in signature.output_fields if name not in obj]
        if missing:
            raise ValueError(f"missing output field(s) {missing}")
        return {name: codec.adapter.validate_python(obj[name]) for name, codec in codecs(signature).items()}
