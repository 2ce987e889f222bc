"""Label scoring without a model: calibration math, the scoring step with a fake scorer engine, the
search's skipping of variants that cannot score, and the artifact's calibration fields."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from types import SimpleNamespace

import dspy
import numpy as np
import pandas as pd
import pytest
from dspy.lm15 import Request
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer import runtime
from optimizer.accounting import EngineMeter, metered
from optimizer.adapters.scoring import label_set, scoring_support
from optimizer.artifact import load_artifact
from optimizer.artifact.errors import SignatureDriftError
from optimizer.artifact.signature import step_config
from optimizer.evaluate import evaluate
from optimizer.models import GEMMA3, ModelPool, ModelSpec
from optimizer.models.base import API as API_CAPABILITIES
from optimizer.models.base import RAW_METADATA_KEY, Engine, Generation
from optimizer.models.engine import LlamaEngine
from optimizer.models.prompt import chat_messages
from optimizer.models.scoring import SCORE_METADATA_KEY
from optimizer.search.calibrate import CONTENT_FREE, calibrate_steps, unscorable
from optimizer.search.compile import compile
from optimizer.search.settings import Budget, SearchSettings, SpaceSettings
from optimizer.space.build import build_program
from optimizer.space.calibration import calibrate, choose, distribution, estimate_prior
from optimizer.space.variant import SearchSpace, StepChoice, StepConfig, StepSpace, Variant, strategy_settings
from optimizer.tracking.serving import ARTIFACT_KEY, CompiledProgramModel
from programs.sentiment import TASK, Sentiment, metric
from tests.fixtures.artifacts import rewrite, save_sentiment

KEYS = ["negative", "positive"]
FIXTURE = Path(__file__).parent / "fixtures" / "compiled-program.v1.json"


class FakeScorer(LlamaEngine):
    """A 'local' engine without a model: scoring calls favour ``positive`` strongly (a biased model)
    unless the sentence says "awful"; content-free inputs favour ``positive`` even more. Generation
    answers `` positive``. Every call is reserved on the meter and reported like a real one (the base class)."""

    def generate(self, request: Request) -> Generation:
        metadata = (request.config.extensions or {}).get("metadata") or {}
        prompt = "".join(m["content"] for m in chat_messages(request))
        if SCORE_METADATA_KEY in metadata:
            assert metadata.get(RAW_METADATA_KEY) and metadata[SCORE_METADATA_KEY] == [" negative", " positive"]
            last = prompt.rsplit("Sentence:", 1)[-1]
            if any(last == f" {t}\nSentiment:" for t in CONTENT_FREE):
                logprobs = [-4.0, -0.02]
            elif "awful" in last:
                logprobs = [-1.0, -0.46]  # positive still wins uncalibrated, loses calibrated
            else:
                logprobs = [-6.0, -0.0025]
            return Generation(json.dumps(logprobs), "stop", 10, 2, 0.0)
        return Generation(" positive", "stop", 10, 1, 0.0)


FAKE = ModelSpec(name="local/fake-scorer", provider="local", gguf="smollm2", chat=False)
API = ModelSpec(name="openai/fake-api", provider="litellm")


@pytest.fixture
def fake_lm():
    runtime.configure(tempfile.mkdtemp())
    return dspy.LM(FAKE.name, engine=FakeScorer(FAKE), max_tokens=16, temperature=0.0, num_retries=0)


def scored_config(**changes) -> StepConfig:
    fields = {"instruction": "Classify the sentiment.", "model": FAKE.name, "format": "compact",
              **strategy_settings("score")}
    return StepConfig(**{**fields, **changes})


def test_calibration_divides_by_the_prior_and_renormalises():
    probs = distribution([np.log(0.8), np.log(0.2)])
    assert probs == pytest.approx([0.8, 0.2])
    assert calibrate(probs, {"negative": 0.8, "positive": 0.2}, KEYS) == pytest.approx([0.5, 0.5])
    assert calibrate(probs, None, KEYS) is probs
    with pytest.raises(ValueError, match="prior is over"):
        calibrate(probs, {"neg": 0.5, "pos": 0.5}, KEYS)
    assert estimate_prior([np.array([0.9, 0.1]), np.array([0.7, 0.3])], KEYS) == pytest.approx(
        {"negative": 0.8, "positive": 0.2})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-30, 0), min_size=2, max_size=6), st.data(), st.floats(1e-3, 1e3))
def test_calibrated_choice_is_invariant_to_scaling_the_prior(logprobs, data, scale):
    keys = [f"l{i}" for i in range(len(logprobs))]
    prior = {k: data.draw(st.floats(1e-6, 1.0)) for k in keys}
    best, confidence = choose(logprobs, prior, keys)
    scaled_best, scaled_confidence = choose(logprobs, {k: v * scale for k, v in prior.items()}, keys)
    assert scaled_best == best
    assert scaled_confidence == pytest.approx(confidence)
    uniform_best, _ = choose(logprobs, dict.fromkeys(keys, 0.3), keys)
    assert uniform_best == int(np.argmax(distribution(logprobs)))


def test_label_sets_cover_literal_enum_and_bool_outputs_only():
    assert label_set(dspy.Signature("text -> sentiment: Literal['negative', 'positive']")).keys == KEYS
    both = label_set(dspy.Signature("text -> sentiment: Literal['a', 'b'], sure: bool"))
    assert both.keys == ['["a", "true"]', '["a", "false"]', '["b", "true"]', '["b", "false"]']
    assert both.outputs[1] == {"sentiment": "a", "sure": False}
    assert label_set(dspy.Signature("text -> answer: str")) is None
    assert label_set(dspy.Signature("text -> sentiment: Literal['a', 'b'], why: str")) is None


def test_a_score_step_picks_the_calibrated_label_and_reports_its_confidence(fake_lm):
    examples = [dspy.Example(sentence="an awful film", sentiment="negative").with_inputs("sentence"),
                dspy.Example(sentence="a fine film", sentiment="positive").with_inputs("sentence")]
    plain = build_program(Sentiment(), {"classify": scored_config()}, lambda _: fake_lm)
    assert [plain(sentence=e.sentence).sentiment for e in examples] == ["positive", "positive"]
    steps = calibrate_steps(Sentiment(), {"classify": scored_config(calibration="cc")}, [], lambda _: fake_lm)
    prior = steps["classify"].prior
    assert set(prior) == set(KEYS) and prior["positive"] > 0.9
    calibrated = build_program(Sentiment(), steps, lambda _: fake_lm)
    ev = evaluate(calibrated, examples, metric, show_progress=False)
    assert [r.prediction["sentiment"] for r in ev.results] == ["negative", "positive"]
    assert all(0.5 <= r.confidence <= 1.0 for r in ev.results)
    assert ev.summary().mean_confidence == pytest.approx(np.mean([r.confidence for r in ev.results]))
    assert ev.summary().lm_calls == 2  # one scoring call per example


def test_scoring_calls_are_metered_and_cached(fake_lm):
    program = build_program(Sentiment(), {"classify": scored_config()}, lambda _: fake_lm)
    with metered(EngineMeter()) as meter:
        program(sentence="a fine film")
        program(sentence="a fine film")
    assert meter.calls == 1


def test_batch_calibration_averages_training_inputs(fake_lm):
    train = TASK.load("train", limit=10)
    steps = calibrate_steps(Sentiment(), {"classify": scored_config(calibration="bc")}, train, lambda _: fake_lm)
    expected = estimate_prior([distribution([-6.0, -0.0025])], KEYS)  # no training sentence says "awful"
    assert steps["classify"].prior == pytest.approx(expected)


def test_the_search_skips_score_where_a_model_or_format_cannot_score():
    pool = ModelPool([FAKE, API])
    space = SearchSpace(steps={"classify": StepSpace(instructions={"o": "x"}, demo_sets={"zero": []}, labels_only=True),
                               "explain": StepSpace(instructions={"o": "x"}, demo_sets={"zero": []})},
                        models=pool.names, strategies=["score-cc", "direct"], formats=["compact", "json"])
    assert space.choices("classify")["strategy"] == ["score-cc", "direct"]
    assert space.choices("explain")["strategy"] == ["direct"]

    def variant(model: str, fmt: str) -> Variant:
        return Variant(steps={"classify": StepChoice(instruction="o", demos="zero", model=model, strategy="score-cc",
                                                     format=fmt)})

    assert unscorable(variant(FAKE.name, "compact"), pool) is None
    assert "json format has no label scorer" in unscorable(variant(FAKE.name, "json"), pool)
    assert "API model" in unscorable(variant(API.name, "compact"), pool)
    assert scoring_support(GEMMA3, "compact") is None


def test_a_compile_prunes_unscorable_variants_and_never_evaluates_them():
    runtime.configure(tempfile.mkdtemp())

    class FakeApi(Engine):
        capabilities = API_CAPABILITIES

        def generate(self, request):
            return Generation('{"sentiment": "positive"}', "stop", 5, 5, 0.0)

    pool = ModelPool([FAKE, API], engine_for=lambda s: FakeScorer(s) if s.provider == "local" else FakeApi(s))
    result = compile(Sentiment(), trainset=TASK.load("train", limit=20), valset=TASK.load("val", limit=6),
                     metric=metric, models=pool, budget=Budget(calls=120),
                     search=SearchSettings(sampler="exhaustive", objectives=("quality",), minibatch=6, seed=0),
                     space=SpaceSettings(proposer=None, teacher=None, formats=("compact", "json"),
                                         strategies=("direct", "score-cc")), show_progress=False)
    evaluated = {(t.variant.steps["classify"].model, t.variant.steps["classify"].format,
                  t.variant.steps["classify"].strategy) for t in result.trials}
    assert (FAKE.name, "compact", "score-cc") in evaluated
    assert not any(s.startswith("score") and (m == API.name or f == "json") for m, f, s in evaluated)
    scored = [t for t in result.trials if t.steps["classify"].strategy == "score"]
    assert scored and all(set(t.steps["classify"].prior) == set(KEYS) for t in scored)
    assert {b.variant.steps["classify"].strategy for b in result.baselines} == {"direct"}


def test_artifacts_round_trip_the_calibration_and_runs_apply_it(tmp_path, fake_lm, monkeypatch):
    prior = {"negative": 0.05, "positive": 0.95}
    path = save_sentiment(tmp_path / "a.json", spec=FAKE, format="compact", **strategy_settings("score-cc"),
                          prior=prior)
    doc = json.loads(path.read_text())
    assert doc["steps"]["classify"]["strategy"]["calibration"] == {"mode": "cc", "prior": prior}
    assert step_config(doc["steps"]["classify"]).prior == prior
    program = load_artifact(path)
    program.classify.lm = fake_lm
    assert program(sentence="an awful film").sentiment == "negative"
    monkeypatch.setenv("PROGOPT_CACHE_DIR", str(tmp_path / "cache"))
    served = CompiledProgramModel()
    served.load_context(SimpleNamespace(artifacts={ARTIFACT_KEY: str(path)}))
    served.program.classify.lm = fake_lm
    assert served.predict(None, pd.DataFrame([{"sentence": "an awful film"}])) == [{"sentiment": "negative"}]
    rewrite(path, lambda d: d["steps"]["classify"]["strategy"]["calibration"].update(prior={"a": 0.5, "b": 0.5}))
    with pytest.raises(SignatureDriftError, match="prior is over"):
        load_artifact(path)


def test_an_artifact_without_calibration_fields_still_loads():
    doc = json.loads(FIXTURE.read_text())
    assert "calibration" not in doc["steps"]["classify"]["strategy"]
    config = step_config(doc["steps"]["classify"])
    assert (config.calibration, config.prior) == ("none", None)
    assert isinstance(load_artifact(FIXTURE, program=Sentiment), dspy.Module)


def test_score_strategies_parse_and_others_are_refused():
    assert strategy_settings("score-bc") == {"strategy": "score", "samples": 1, "temperature": 0.0,
                                             "calibration": "bc"}
    with pytest.raises(ValueError, match="score-cc"):
        strategy_settings("score-xx")

