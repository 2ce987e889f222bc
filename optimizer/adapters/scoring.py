"""Label scoring on the DSPy side: which steps can be scored, and the scoring request of each format.

A step can be scored when every output field is a label (``Literal``, ``Enum`` or ``bool``): its
candidates are the label combinations (one per label for the usual single output). A format's scorer
builds the prompt exactly as that format does for generation, asks the model (one LM call, through DSPy's
cache and the engines' meter) for the summed log-prob of every combination's text as the format would
write it, and returns the combinations with their log-probs. Calibration and the choice happen in
:class:`optimizer.space.build.ConfiguredPredict`.

Formats: ``compact`` on local llama.cpp models (a base model continues the raw prompt after
``Sentiment:`` with `` positive``; a chat model answers its chat turn with ``Sentiment: positive``).
``json`` and ``chat`` prompts are not scored, and API models cannot be (LiteLLM returns log-probs of the
tokens a model generated, not of given continuations): :func:`scoring_support` names why, and the search
skips those combinations.
"""

from __future__ import annotations

import enum
import itertools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, get_origin

import dspy

from optimizer.adapters.compact import codecs, label, render_prompt
from optimizer.adapters.fields import FieldCodec
from optimizer.models.base import RAW_METADATA_KEY, capabilities_of
from optimizer.models.scoring import SCORE_METADATA_KEY
from optimizer.models.spec import ModelSpec

Signature = type[dspy.Signature]
# More label combinations than this are not scored (each is a continuation in one pass).
MAX_LABEL_COMBINATIONS = 64
SCORED_FORMATS = ("compact",)  # the formats with a scorer (:data:`SCORERS`)


class ScoringUnsupported(ValueError):
    """This model or format cannot score labels (the search never proposes such a variant)."""


@dataclass(frozen=True)
class LabelSet:
    """A step's label combinations, in a fixed order: ``keys`` (the prior's keys: the label text, or
    a JSON list of texts for several outputs), ``texts`` (per output field) and ``outputs`` (typed values)."""

    keys: list[str]
    texts: list[tuple[str, ...]]
    outputs: list[dict[str, Any]]


def field_labels(annotation: Any) -> dict[str, Any] | None:
    """Label text -> value for a ``Literal``, ``Enum`` or ``bool`` annotation; None for anything else."""
    if annotation is bool:
        return {"true": True, "false": False}
    if get_origin(annotation) is Literal or (isinstance(annotation, type) and issubclass(annotation, enum.Enum)):
        return dict(FieldCodec.of(annotation).choices)
    return None


def label_set(signature: Signature) -> LabelSet | None:
    """The step's label combinations, or None when some output is not a label (or there are too many)."""
    per_field = {}
    for name, f in signature.output_fields.items():
        labels = field_labels(f.annotation)
        if not labels:
            return None
        per_field[name] = labels
    combos = list(itertools.product(*(list(labels) for labels in per_field.values())))
    if not combos or len(combos) > MAX_LABEL_COMBINATIONS:
        return None
    names = list(per_field)
    return LabelSet(keys=[c[0] if len(c) == 1 else json.dumps(list(c)) for c in combos], texts=combos,
                    outputs=[{n: per_field[n][t] for n, t in zip(names, c, strict=True)} for c in combos])


def scoring_support(spec: ModelSpec, fmt: str) -> str | None:
    """Why ``spec`` cannot score labels in format ``fmt``, or None when it can."""
    if spec.provider != "local":
        return (f"{spec.name} is an API model: label scoring needs the log-probs of given label continuations, "
                "which LiteLLM providers do not return (only of generated tokens)")
    if fmt not in SCORED_FORMATS:
        return f"the {fmt} format has no label scorer (scored formats: {', '.join(SCORED_FORMATS)})"
    return None


def _compact_text(signature: Signature, combo: tuple[str, ...], *, first_prefix: bool) -> str:
    """The combination as the compact format writes it after the prompt (see ``output_regex``)."""
    parts = []
    for i, (name, text) in enumerate(zip(codecs(signature), combo, strict=True)):
        head = label(name, signature.output_fields[name]) + ":"
        parts.append(("\n" + head if i else head if first_prefix else "") + " " + text)
    return "".join(parts)


def score_compact(lm: dspy.LM, signature: Signature, demos: list[Any],
                  inputs: dict[str, Any]) -> tuple[LabelSet, list[float]]:
    """One scoring call for the compact prompt: the label set and each combination's summed log-prob."""
    labels = label_set(signature)
    if labels is None:
        raise ScoringUnsupported(f"{signature.__name__}: every output must be a label (Literal, Enum, bool) "
                                 f"with at most {MAX_LABEL_COMBINATIONS} combinations to be scored")
    if not capabilities_of(lm).label_scoring:
        raise ScoringUnsupported(f"model {getattr(lm, 'model', lm)!r} cannot score labels (not a local model)")
    chat = lm.engine.spec.chat
    texts = [_compact_text(signature, combo, first_prefix=chat) for combo in labels.texts]
    metadata: dict[str, Any] = {SCORE_METADATA_KEY: texts}
    if not chat:
        metadata[RAW_METADATA_KEY] = True
    prompt = render_prompt(signature, demos, inputs, answer_prefix=not chat)
    reply = lm(prompt, metadata=metadata)[0]
    logprobs = json.loads(reply if isinstance(reply, str) else reply["text"])
    if not isinstance(logprobs, list) or len(logprobs) != len(texts):
        raise ValueError(f"the scorer returned {str(reply)[:100]!r} for {len(texts)} labels")
    return labels, [float(x) for x in logprobs]


SCORERS: Mapping[str, Callable[..., tuple[LabelSet, list[float]]]] = MappingProxyType({"compact": score_compact})


def scorer_for(fmt: str) -> Callable[..., tuple[LabelSet, list[float]]]:
    """The label scorer of the prompt format ``fmt`` (ValueError for a format that cannot score)."""
    try:
        return SCORERS[fmt]
    except KeyError:
        raise ValueError(f"the {fmt} format cannot score labels; known: {sorted(SCORERS)}") from None
