"""Label words (verbalizers): the words a step's prompt shows, generates and scores in place of its labels, and
the map back to the declared labels, so a program's outputs never change type.

A verbalizer is data, ``{output field: {label text: word}}``: only label fields (``Literal``, ``Enum``,
``bool``), every label of a named field given, words distinct within a field, one short line each (:func:`check`).
Where the words come from is a searched knob of a step (``StepChoice.verbalizer``):

- ``labels``: none, the label text itself (what every step had before the knob);
- ``signature``: words the signature already gives, "ABBR abbreviation, DESC description" or "ABBR: abbreviation"
  in its instructions or the field's description (:func:`from_signature`);
- ``auto``: words found from the training data and ranked by the models (:mod:`optimizer.search.label_words`).

Lifecycle: candidates are built once per compile with the space; the chosen one is stored in the step's config
and the artifact; :class:`~optimizer.space.build.ConfiguredPredict` applies it on every call
(:func:`verbalize_signature` for the prompt and the constraint, :func:`to_words` for demos, :func:`to_labels` for
its predictions). Label scoring and calibration then see the words as the step's labels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import dspy

from optimizer.adapters.fields import FieldCodec
from optimizer.adapters.scoring import field_labels

Verbalizer = dict[str, dict[str, str]]
VERBALIZER_SOURCES = ("labels", "signature", "auto")
MAX_WORD_LENGTH = 40
_WORD = re.compile(r"[A-Za-z][A-Za-z' -]{0,38}[A-Za-z]|[A-Za-z]")
# A label followed by one of these is in running text ("positive or negative"), not given a word.
_FUNCTION_WORDS = frozenset({"a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "if", "in", "is", "it",
                             "of", "on", "or", "the", "to", "with"})


def label_fields(signature: type[dspy.Signature]) -> dict[str, dict[str, Any]]:
    """Output field -> {label text: typed value} for the step's label outputs (none for other outputs)."""
    out = {}
    for name, f in signature.output_fields.items():
        labels = field_labels(f.annotation)
        if labels:
            out[name] = labels
    return out


def check(signature: type[dspy.Signature], verbalizer: Mapping[str, Mapping[str, str]]) -> None:
    """ValueError naming the field or label when ``verbalizer`` does not fit ``signature``'s label outputs."""
    fields = label_fields(signature)
    for name, words in verbalizer.items():
        if name not in fields:
            raise ValueError(f"{name!r} is not a label output of the step (label outputs: {sorted(fields) or 'none'})")
        if set(words) != set(fields[name]):
            raise ValueError(f"field {name!r}: the words must cover exactly its labels {sorted(fields[name])}, "
                             f"not {sorted(words)}")
        for label, word in words.items():
            if not word.strip() or "\n" in word or len(word) > MAX_WORD_LENGTH or word != word.strip():
                raise ValueError(f"field {name!r}, label {label!r}: {word!r} is not a one-line word of at most "
                                 f"{MAX_WORD_LENGTH} characters")
        if len(set(words.values())) != len(words):
            raise ValueError(f"field {name!r}: two labels share a word ({sorted(words.values())})")


def verbalize_signature(signature: type[dspy.Signature], verbalizer: Verbalizer) -> type[dspy.Signature]:
    """``signature`` with each verbalized field's type replaced by ``Literal`` of its words (label order)."""
    for name, words in verbalizer.items():
        labels = label_fields(signature)[name]
        signature = signature.with_updated_fields(name, type_=Literal[tuple(words[label] for label in labels)])
    return signature


def to_words(signature: type[dspy.Signature], verbalizer: Verbalizer, record: Mapping[str, Any]) -> dict[str, Any]:
    """A demo's values with each verbalized label replaced by its word (values that are no label stay)."""
    out = dict(record)
    for name, words in verbalizer.items():
        if name in out and out[name] is not None:
            try:
                out[name] = words[FieldCodec.of(signature.output_fields[name].annotation).render(out[name])]
            except (ValueError, KeyError):
                continue
    return out


def to_labels(signature: type[dspy.Signature], verbalizer: Verbalizer, prediction: dspy.Prediction) -> None:
    """Map ``prediction``'s words back to the declared (typed) labels, in place."""
    for name, words in verbalizer.items():
        back = {word: label for label, word in words.items()}
        labels = label_fields(signature)[name]
        if name in prediction and prediction[name] in back:
            prediction[name] = labels[back[prediction[name]]]


def _phrase(text: str) -> str | None:
    """The leading word or short phrase of ``text`` (up to a comma, period, semicolon or parenthesis; without
    an article), or None when it is running text."""
    head = re.split(r"[,.;()\n]| and | or ", text.strip(), maxsplit=1)[0].strip()
    head = re.sub(r"^(?:a|an|the)\s+", "", head, flags=re.IGNORECASE)
    match = _WORD.fullmatch(head)
    if not match or len(head.split()) > 3 or head.split()[0].lower() in _FUNCTION_WORDS:
        return None
    return match.group(0).lower()


def from_signature(signature: type[dspy.Signature]) -> Verbalizer | None:
    """Words the signature gives its labels: after each label in the instructions or the field's description,
    as in "ABBR abbreviation, DESC description" or "pos: a favourable review". None unless every label of
    some field gets a distinct word that differs from the label."""
    out: Verbalizer = {}
    for name, labels in label_fields(signature).items():
        f = signature.output_fields[name]
        text = " ".join(filter(None, [signature.instructions, (f.json_schema_extra or {}).get("desc")]))
        words = {}
        for label in labels:
            match = re.search(rf"(?<![\w:]){re.escape(label)}(?!\w|:\w)\s*(?:[:=]|-|\u2014|\(|is|means)?\s*(.+)",
                              text)
            word = _phrase(match.group(1)) if match else None
            if word is None or word == label.lower() or any(other.lower() in word.split() for other in labels):
                break
            words[label] = word
        else:
            if len(set(words.values())) == len(words):
                out[name] = words
    return out or None
