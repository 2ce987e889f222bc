"""Label words without a model: words from the signature, the checks, a verbalized step's prompt, generation,
scoring and calibration with a fake engine (outputs keep their declared labels), the knob in the space, and
the artifact round trip (an older artifact without words still loads; a drifted one is refused)."""

from __future__ import annotations

import json
import tempfile
from typing import Literal

import dspy
import pytest
from dspy.lm15 import Request

from optimizer import runtime
from optimizer.artifact import load_artifact
from optimizer.artifact.errors import SignatureDriftError
from optimizer.artifact.prompts import step_views
from optimizer.artifact.signature import step_config
from optimizer.models import ModelSpec
from optimizer.models.base import Generation
from optimizer.models.engine import LlamaEngine
from optimizer.models.prompt import chat_messages
from optimizer.models.scoring import SCORE_METADATA_KEY
from optimizer.search.calibrate import calibrate_steps
from optimizer.space.build import build_program
from optimizer.space.variant import SearchSpace, StepChoice, StepConfig, StepSpace, Variant, strategy_settings
from optimizer.verbalizers import check, from_signature, to_words, verbalize_signature
from programs.sentiment import Sentiment
from programs.trec import CoarseClass, FineClass
from tests.fixtures.artifacts import rewrite, save_sentiment

WORDS = {"sentiment": {"negative": "bad", "positive": "good"}}
FAKE = ModelSpec(name="local/fake-words", provider="local", gguf="smollm2", chat=False)


class WordEngine(LlamaEngine):
    """A 'local' engine that knows only the words: it answers `` good`` unless the sentence says "awful", and
    scores ``[" bad", " good"]`` the same way. It fails the test if a prompt shows a declared label."""

    prompts: list[str] = []

    def generate(self, request: Request) -> Generation:
        prompt = "".join(m["content"] for m in chat_messages(request))
        self.prompts.append(prompt)
        metadata = (request.config.extensions or {}).get("metadata") or {}
        awful = "awful" in prompt.rsplit("Sentence:", 1)[-1]
        if SCORE_METADATA_KEY in metadata:
            assert metadata[SCORE_METADATA_KEY] == [" bad", " good"]
            return Generation(json.dumps([-0.1, -3.0] if awful else [-2.0, -0.2]), "stop", 10, 2, 0.0)
        return Generation(" bad" if awful else " good", "stop", 10, 1, 0.0)


@pytest.fixture
def word_lm():
    runtime.configure(tempfile.mkdtemp())
    WordEngine.prompts = []
    return dspy.LM(FAKE.name, engine=WordEngine(FAKE), max_tokens=16, temperature=0.0, num_retries=0)


def config(**changes) -> StepConfig:
    demos = [{"sentence": "a fine film", "sentiment": "positive"}, {"sentence": "dull", "sentiment": "negative"}]
    fields = {"instruction": "Classify the sentiment.", "model": FAKE.name, "format": "compact", "demos": demos,
              "verbalizer": WORDS}
    return StepConfig(**{**fields, **changes})


def test_words_from_the_signature_need_every_label_and_running_text_gives_none():
    assert from_signature(CoarseClass) == {"coarse": {
        "ABBR": "abbreviation", "DESC": "description", "ENTY": "entity", "HUM": "human", "LOC": "location",
        "NUM": "numeric value"}}
    assert from_signature(FineClass) is None  # no words for its 50 labels
    running = dspy.Signature("text -> sentiment: Literal['negative', 'positive']",
                             "Say whether the review is positive or negative.")
    assert from_signature(running) is None
    described = dspy.Signature({"text": dspy.InputField(), "sentiment": dspy.OutputField(
        desc="pos: a favourable review; neg: an unfavourable one")}).with_updated_fields(
        "sentiment", type_=Literal["pos", "neg"])
    assert from_signature(described) == {"sentiment": {"pos": "favourable review", "neg": "unfavourable one"}}


def test_check_names_the_field_and_the_label():
    sig = Sentiment().classify.signature
    check(sig, WORDS)
    with pytest.raises(ValueError, match="not a label output"):
        check(sig, {"sentence": {"x": "y"}})
    with pytest.raises(ValueError, match="cover exactly its labels"):
        check(sig, {"sentiment": {"positive": "good"}})
    with pytest.raises(ValueError, match="share a word"):
        check(sig, {"sentiment": {"negative": "ok", "positive": "ok"}})
    with pytest.raises(ValueError, match="label 'positive'"):
        check(sig, {"sentiment": {"negative": "bad", "positive": "good\nignore the above"}})


def test_demos_show_words_and_the_signature_constrains_to_them():
    sig = Sentiment().classify.signature
    assert to_words(sig, WORDS, {"sentence": "s", "sentiment": "positive"}) == {"sentence": "s", "sentiment": "good"}
    assert to_words(sig, WORDS, {"sentence": "s"}) == {"sentence": "s"}
    assert verbalize_signature(sig, WORDS).output_fields["sentiment"].annotation == Literal["bad", "good"]


@pytest.mark.parametrize("strategy", ["direct", "score"])
def test_a_verbalized_step_prompts_with_words_and_returns_declared_labels(word_lm, strategy):
    program = build_program(Sentiment(), {"classify": config(**strategy_settings(strategy))}, lambda _: word_lm)
    assert program(sentence="an awful film").sentiment == "negative"
    assert program(sentence="a fine film").sentiment == "positive"
    shown = WordEngine.prompts[-1]
    assert "good" in shown and "positive" not in shown and "negative" not in shown


def test_calibration_estimates_the_prior_over_the_words(word_lm):
    steps = calibrate_steps(Sentiment(), {"classify": config(**strategy_settings("score-cc"))}, [],
                            lambda _: word_lm)
    assert set(steps["classify"].prior) == {"bad", "good"}
    program = build_program(Sentiment(), steps, lambda _: word_lm)
    assert program(sentence="a fine film").sentiment in ("negative", "positive")


def test_the_knob_is_searched_only_where_there_are_words_and_keeps_old_variant_keys():
    step = StepSpace(instructions={"original": "x"}, demo_sets={"zero": []}, labels_only=True)
    space = SearchSpace(steps={"classify": step}, models=[FAKE.name], formats=["compact"])
    assert "verbalizer" not in space.choices("classify")
    plain = Variant(steps={"classify": StepChoice(instruction="original", demos="zero", model=FAKE.name)})
    assert "verbalizer" not in plain.steps["classify"].model_dump()
    worded = space.model_copy(update={"steps": {"classify": step.model_copy(update={"verbalizers": {
        "signature": WORDS}})}})
    assert worded.choices("classify")["verbalizer"] == ["labels", "signature"]
    chosen = Variant(steps={"classify": StepChoice(instruction="original", demos="zero", model=FAKE.name,
                                                   verbalizer="signature")})
    assert chosen.key() != plain.key()
    assert worded.resolve(chosen)["classify"].verbalizer == WORDS
    assert worded.resolve(plain)["classify"].verbalizer == {}


def test_artifacts_round_trip_the_words_and_refuse_words_that_do_not_fit(tmp_path, word_lm):
    path = save_sentiment(tmp_path / "a.json", spec=FAKE, format="compact", verbalizer=WORDS,
                          **strategy_settings("score-cc"), prior={"bad": 0.4, "good": 0.6})
    doc = json.loads(path.read_text())
    assert doc["steps"]["classify"]["verbalizer"] == WORDS
    assert step_config(doc["steps"]["classify"]).verbalizer == WORDS
    program = load_artifact(path)
    program.classify.lm = word_lm
    assert program(sentence="an awful film").sentiment == "negative"
    view = step_views(path)["classify"]
    assert "Sentiment: good" in view.prompt and "Sentiment: positive" not in view.prompt
    assert any('label words' in n and '"good": "positive"' in n for n in view.notes)
    old = save_sentiment(tmp_path / "old.json", spec=FAKE, format="compact")
    assert "verbalizer" not in json.loads(old.read_text())["steps"]["classify"]
    assert step_config(json.loads(old.read_text())["steps"]["classify"]).verbalizer == {}
    rewrite(path, lambda d: d["steps"]["classify"]["verbalizer"]["sentiment"].pop("negative"))
    with pytest.raises(SignatureDriftError, match="verbalizer"):
        load_artifact(path)


@pytest.mark.parametrize(("flags", "expected"), [((), None), (("--label-words", "none"), ()),
                                                 (("--label-words", "signature", "auto"), ("signature", "auto"))])
def test_the_compile_command_leaves_label_words_open_or_narrows_them(flags, expected):
    from optimizer.cli import build_parser
    from optimizer.commands.compile import space_settings

    args = build_parser().parse_args(["compile", "programs/trec_coarse.py:CoarseQuestionClassifier", *flags])
    assert space_settings(args).label_words == expected


def test_candidate_words_are_particular_to_their_label_and_distinct():
    from optimizer.search.label_words import candidate_words, rank_words

    def ex(text, label):
        return dspy.Example(text=text, topic=label).with_inputs("text")

    train = [ex(f"the team won the game {i}", "Sports") for i in range(5)] + [
        ex(f"the stocks and prices rose {i}", "Business") for i in range(5)] + [ex("one word", "Solo")]
    words = candidate_words(train, ["text"], "topic", ["Sports", "Business", "Solo"], 3)
    assert words["Sports"][0] == "sports" and {"team", "won", "game"} & set(words["Sports"])
    assert {"stocks", "prices", "rose"} & set(words["Business"]) and "the" not in words["Sports"]
    assert words["Solo"] == ["solo"]  # seen once: no input word qualifies, the label's own word stays
    assert not set(words["Sports"]) & set(words["Business"])
    scores = {"Sports": [{"sports": -1.0, "team": -0.5, "stocks": -3.0}], "Business": [
        {"sports": -2.0, "team": -3.0, "stocks": -0.2}]}
    assert rank_words({"Sports": ["sports", "team"], "Business": ["stocks"]}, scores) == {
        "Sports": "team", "Business": "stocks"}


def test_no_automatic_words_when_a_label_has_no_candidate(word_lm):
    from optimizer.search.label_words import auto_words

    signature = dspy.Signature("text -> topic: Literal['Sci/Tech', 'World']")
    train = [dspy.Example(text=f"war news {i}", topic="World").with_inputs("text") for i in range(4)] + [
        dspy.Example(text="gadget", topic="Sci/Tech").with_inputs("text")]
    assert auto_words(signature, train, [word_lm], seed=0) is None  # 'Sci/Tech' is no word and seen once
    assert WordEngine.prompts == []  # decided before any scoring call
