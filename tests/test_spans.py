"""Copied spans: declaration and inference (optimizer.spans), the decoder's restriction on a toy vocabulary
(optimizer.models.span_mask), and the artifact round trip. The real-model checks are in
tests/test_spans_models.py."""

from __future__ import annotations

from typing import Annotated, Literal

import dspy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from optimizer.models.span_mask import SpanMask, Vocabulary, _occurs
from optimizer.spans import SpanOf, SpanRule, declared_spans, inferred_spans, span_metadata, step_spans


class Entity(BaseModel):
    text: Annotated[str, SpanOf("sentence")]
    type: Literal["PER", "LOC"]


class Declared(dspy.Signature):
    """Extract entities."""

    sentence: str = dspy.InputField()
    entities: list[Entity] = dspy.OutputField()


class Plain(BaseModel):
    text: str
    type: Literal["PER", "LOC"]


class Undeclared(dspy.Signature):
    """Extract entities."""

    sentence: str = dspy.InputField()
    entities: list[Plain] = dspy.OutputField()


def _examples(texts: list[tuple[str, list[str]]]) -> list[dspy.Example]:
    return [dspy.Example(sentence=s, entities=[{"text": t, "type": "PER"} for t in ts]).with_inputs("sentence")
            for s, ts in texts]


TRAIN = _examples([("Ann met Bob in Rome .", ["Ann", "Bob"]), ("Sony sued Apple .", ["Sony", "Apple"]),
                   ("Paris is big .", ["Paris"]), ("Nothing here .", [])])


def test_a_declared_span_is_read_from_the_annotation():
    assert declared_spans(Declared) == [SpanRule(key="text", source="sentence", max_words=8)]
    assert step_spans(Declared, TRAIN) == [SpanRule(key="text", source="sentence")]


def test_a_span_of_a_field_that_is_not_an_input_is_refused():
    class Wrong(dspy.Signature):
        other: str = dspy.InputField()
        entities: list[Entity] = dspy.OutputField()

    with pytest.raises(ValueError, match="'sentence', which is not an input field"):
        declared_spans(Wrong)


def test_a_span_is_inferred_only_when_every_training_value_is_copied():
    assert inferred_spans(Undeclared, TRAIN) == [SpanRule(key="text", source="sentence", max_words=2,
                                                          inferred=True)]  # one word seen, one to spare
    invented = [*TRAIN, *_examples([("Ann left .", ["Annie"])])]
    assert inferred_spans(Undeclared, invented) == []
    assert inferred_spans(Undeclared, TRAIN[:2]) == []  # 4 values: too few to infer from
    assert span_metadata(step_spans(Undeclared, TRAIN), {"sentence": "Ann left ."}) == [
        {"key": "text", "source": "Ann left .", "max_words": 2}]


PIECES = ["A", "n", "Ann", " met", " Bob", "Bo", "b", " ", "Rome", " Rome", "in", " in", "x", "Annie", '"', '",',
          '"}', "m", "e", "t", "R", "o", ".", " .", "i"]


class _Mask(SpanMask):
    """The span restriction without a compiled index (the guide is not needed to test ``allowed``)."""

    def __init__(self, source: str):  # noqa: D107 - a test double
        self.vocabulary, self.text = Vocabulary({p: [i] for i, p in enumerate(PIECES)}), ""
        self.sources, self.max_words = {"text": source}, {"text": 2}
        self.max_tokens, self.used, self.item_ends = None, 0, [0]
        import re

        self._open = re.compile(r'"(text)"\s*:\s*"([^"\\]*)$')
        self._closed = re.compile(r'"(text)"\s*:\s*"([^"\\]*)"')


def _pieces(mask: SpanMask, value: str) -> set[str]:
    return {PIECES[i] for i in mask.allowed("text", value)}


def test_a_value_starts_at_a_word_grows_inside_the_input_and_closes_at_a_word_end():
    mask = _Mask("Ann met Bob in Rome .")
    assert _pieces(mask, "") == {"A", "Ann", "Bo", "Rome", "m", "in", "i", "R", "."}  # word starts only
    assert _pieces(mask, "An") == {"n"}  # "An" is not a word: it cannot close
    assert _pieces(mask, "Ann") == {" met", " ", '"', '",', '"}'}  # a word: may close or grow
    assert "x" not in _pieces(mask, "Ann") and "Annie" not in _pieces(mask, "")
    assert _pieces(mask, "Ann met") == {'"', '",', '"}'}  # two words: the rule's longest value


def test_an_earlier_value_is_not_repeated_unless_nothing_else_is_left():
    mask = _Mask("Ann met Bob .")
    mask.text = '{"entities": [{"text": "Ann", "type": "PER"}, {"text": "'
    assert '"' not in _pieces(mask, "Ann") and " met" in _pieces(mask, "Ann")
    mask.text = '{"entities": [{"text": "Bob .", "type": "PER"}, {"text": "'
    assert " ." not in _pieces(mask, "Bob")  # it could not grow out of "Bob ." again: never entered
    assert '"' in _pieces(mask, "Bob")


def test_a_value_never_gets_stuck_on_a_space_before_an_uncopyable_character():
    mask = _Mask('Ann met " Bob')
    assert " " not in _pieces(mask, "Ann met")  # the quote after it cannot be copied: the value would be stuck
    assert _pieces(mask, "Ann met ") >= {'"', '",', '"}'}  # were it there, it closes rather than invent


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="AnBobRmeti .x", min_size=1, max_size=30), st.data())
def test_every_closable_value_is_a_substring_of_its_input(source, data):
    mask = _Mask(source)
    value = ""
    for _ in range(12):  # walk a random path of allowed tokens
        allowed = sorted(_pieces(mask, value))
        if not allowed:
            break
        piece = data.draw(st.sampled_from(allowed))
        if piece.startswith('"'):  # at a word end, unless the value could do nothing else
            assert value and value in source
            assert _occurs(value, source, closing=True) or len(allowed) == len(mask.vocabulary.closers)
            break
        value += piece
        assert value in source


def test_the_artifact_keeps_span_rules_and_an_older_artifact_without_them_loads(tmp_path):
    from optimizer.artifact import ArtifactFormatError, load_artifact, read_artifact, save_artifact
    from optimizer.artifact.errors import SignatureDriftError
    from optimizer.models import GEMMA3
    from optimizer.space.variant import StepConfig
    from programs.entities import EntityExtractor
    from tests.fixtures.artifacts import SUMMARY, rewrite

    rules = [SpanRule(key="text", source="text", inferred=True)]
    config = StepConfig(instruction="Extract.", model=GEMMA3.name, format="json", spans=rules)
    path = save_artifact(tmp_path / "a.json", program_ref="programs/entities.py:EntityExtractor",
                         program=EntityExtractor(), steps={"extract": config}, models={GEMMA3.name: GEMMA3},
                         metrics={"validation": SUMMARY}, provenance={})
    assert read_artifact(path)["steps"]["extract"]["spans"] == [{"key": "text", "source": "text", "max_words": 8,
                                                                  "inferred": True}]
    assert load_artifact(path).extract.step_config == config
    older = rewrite(path, lambda doc: doc["steps"]["extract"].pop("spans"))
    assert load_artifact(older).extract.step_config.spans == []
    wrong = rewrite(path, lambda doc: doc["steps"]["extract"].update(spans=[{"key": "text", "source": "nope"}]))
    with pytest.raises(SignatureDriftError, match=r"steps\.extract\.spans\[0\]\.source"):
        load_artifact(wrong)
    code = rewrite(path, lambda doc: doc["steps"]["extract"].update(spans=[{"key": "t", "source": "text",
                                                                            "run": "os.system"}]))
    with pytest.raises(ArtifactFormatError, match="spans"):
        load_artifact(code)


def test_a_top_level_string_field_may_be_declared_a_span():
    class Answer(dspy.Signature):
        context: str = dspy.InputField()
        answer: Annotated[str, SpanOf("context")] = dspy.OutputField()

    assert declared_spans(Answer) == [SpanRule(key="answer", source="context")]


def test_span_decoding_is_a_searched_knob_only_where_a_step_has_rules_and_keys_are_unchanged():
    from optimizer.space.variant import SearchSpace, StepChoice, StepSpace, Variant

    rules = [SpanRule(key="text", source="text", inferred=True)]
    with_rules = StepSpace(instructions={"original": "i"}, demo_sets={"zero": []}, spans=rules)
    plain = StepSpace(instructions={"original": "i"}, demo_sets={"zero": []})
    space = SearchSpace(steps={"a": with_rules, "b": plain}, models=["m"])
    assert space.choices("a")["spans"] == ["on", "off"] and "spans" not in space.choices("b")
    on = Variant(steps={"a": StepChoice(instruction="original", demos="zero", model="m"),
                        "b": StepChoice(instruction="original", demos="zero", model="m")})
    off = Variant(steps={**on.steps, "a": on.steps["a"].model_copy(update={"spans": "off"})})
    assert space.resolve(on)["a"].spans == rules and space.resolve(off)["a"].spans == []
    assert "spans" not in on.steps["a"].model_dump() and off.steps["a"].model_dump()["spans"] == "off"
    import hashlib
    import json

    # "on" leaves the key as it was before the knob existed
    legacy = {"steps": {k: {f: getattr(c, f) for f in ("instruction", "demos", "model", "strategy", "format")}
                        for k, c in on.steps.items()}}
    assert on.key() == hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()[:12]
