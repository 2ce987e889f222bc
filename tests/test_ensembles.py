"""Ensembles of label-scoring variants without a model: the averaged calibrated choice, the final stage's
ensemble candidates, a compile that scores them paired with the singles, and the artifact: round trip,
refusals, and the trust rules applied to every member's model (endpoints, model files, uses)."""

from __future__ import annotations

import json
import tempfile

import pytest
from dspy.lm15 import Request

from optimizer import runtime
from optimizer.artifact import ArtifactTrustError, TrustPolicy, load_artifact, save_artifact
from optimizer.artifact.errors import ArtifactFormatError, SignatureDriftError
from optimizer.artifact.prompts import step_views
from optimizer.artifact.signature import step_config
from optimizer.artifact.trust import checked_models, uses
from optimizer.models import ModelPool, ModelSpec
from optimizer.models.base import Generation
from optimizer.models.engine import LlamaEngine
from optimizer.models.prompt import chat_messages
from optimizer.models.scoring import SCORE_METADATA_KEY
from optimizer.search.compile import compile
from optimizer.search.selection import ensembles
from optimizer.search.settings import Budget, SearchSettings, SpaceSettings
from optimizer.space.build import build_program
from optimizer.space.variant import StepChoice, StepConfig, Variant, strategy_settings
from programs.sentiment import TASK, Sentiment, metric
from tests.fixtures.artifacts import SUMMARY, rewrite, save_sentiment

A = ModelSpec(name="local/fake-a", provider="local", gguf="smollm2", chat=False)
B = ModelSpec(name="local/fake-b", provider="local", gguf="smollm2", chat=False)
INSTRUCTION = "Classify the sentiment."


class Leaning(LlamaEngine):
    """A 'local' scorer: model a leans positive, model b negative, both more so on "fine" / "awful"."""

    def generate(self, request: Request) -> Generation:
        metadata = (request.config.extensions or {}).get("metadata") or {}
        last = "".join(m["content"] for m in chat_messages(request)).rsplit("Sentence:", 1)[-1]
        lean = 1.0 if self.spec.name == A.name else -1.0
        lean += 2.0 if "fine" in last else -2.0 if "awful" in last else 0.0
        if SCORE_METADATA_KEY in metadata:
            return Generation(json.dumps([-max(lean, 0.0) - 0.1, min(lean, 0.0) - 0.1]), "stop", 10, 2, 0.0)
        return Generation(" positive", "stop", 10, 1, 0.0)


@pytest.fixture
def pool() -> ModelPool:
    runtime.configure(tempfile.mkdtemp())
    return ModelPool([A, B], engine_for=Leaning)


def member(model: str, **changes) -> StepConfig:
    return StepConfig(**{"instruction": INSTRUCTION, "model": model, "format": "compact",
                         **strategy_settings("score"), **changes})


def ensemble_config(*members: StepConfig) -> StepConfig:
    return members[0].model_copy(update={"strategy": "ensemble", "members": list(members)})


def test_an_ensemble_averages_the_members_calibrated_distributions(pool):
    program = build_program(Sentiment(), {"classify": ensemble_config(member(A.name), member(B.name))}, pool.lm)
    assert program(sentence="a fine film").sentiment == "positive"
    assert program(sentence="an awful film").sentiment == "negative"
    # a strong prior on one member moves the average: b's prior says it almost always says negative
    tilted = ensemble_config(member(A.name), member(B.name, calibration="cc", prior={"negative": 0.99,
                                                                                      "positive": 0.01}))
    assert build_program(Sentiment(), {"classify": tilted}, pool.lm)(sentence="a film").sentiment == "positive"


def _record(key: str, score: float, strategy: str = "score", cost: float = 0.0):
    from optimizer.records import TrialRecord
    from optimizer.summary import Summary

    variant = Variant(steps={"classify": StepChoice(instruction=key, demos="zero", model=A.name,
                                                    strategy=strategy, format="compact")})
    steps = {"classify": member(A.name) if strategy.startswith("score") else StepConfig(
        instruction=key, model=A.name)}
    summary = Summary(**{**SUMMARY, "score": score, "cost_per_example": cost})
    return TrialRecord(number=0, variant_key=variant.key(), variant=variant, steps=steps, stage="final",
                       examples=50, summary=summary)


def test_the_final_stage_ensembles_the_best_two_and_three_scoring_finalists():
    finals = [_record("a", 0.8), _record("b", 0.7), _record("c", 0.9, strategy="direct"), _record("d", 0.6),
              _record("e", 0.5)]
    pairs = ensembles(finals)
    assert [[m.steps["classify"].instruction for m in v.members] for v in pairs] == [["a", "b"], ["a", "b", "d"]]
    assert ensembles(finals[:2] + [_record("x", 0.9, strategy="direct")])[0].params() == {
        "ensemble": ",".join(r.variant_key for r in finals[:2])}
    assert ensembles([_record("a", 0.8), _record("c", 0.9, strategy="direct")]) == []


def test_a_compile_scores_ensembles_with_the_singles_on_the_same_examples(pool):
    result = compile(Sentiment(), trainset=TASK.load("train", limit=40), valset=TASK.load("val", limit=30),
                     metric=metric, models=pool, budget=Budget(calls=None),
                     search=SearchSettings(sampler="exhaustive", objectives=("quality",), minibatch=6, seed=0,
                                           final_top=3, validation=10),
                     space=SpaceSettings(proposer=None, teacher=None, formats=("compact",), strategies=("score",),
                                         demo_draws=1, label_words=()), show_progress=False)
    finals = [t for t in result.trials if t.stage == "final"]
    pairs = [t for t in finals if t.variant.members]
    assert [len(t.variant.members) for t in pairs] == [2, 3]
    assert {t.examples for t in finals} == {finals[0].examples}  # paired: the same examples
    assert all(t.steps["classify"].strategy == "ensemble" and len(t.steps["classify"].members) ==
               len(t.variant.members) for t in pairs)
    assert all(t.summary.cost_per_example >= max(f.summary.cost_per_example for f in finals if not
                                                 f.variant.members) for t in pairs)
    from optimizer.results import markdown_report

    report = markdown_report(result)  # the front may or may not hold an ensemble (it costs more)
    if result.chosen in {t.variant_key for t in pairs}:
        assert "an ensemble of" in report and "  - member 1: model" in report


def test_an_ensemble_artifact_round_trips_and_runs(tmp_path, pool):
    config = ensemble_config(member(A.name, calibration="cc", prior={"negative": 0.5, "positive": 0.5}),
                             member(B.name))
    path = save_artifact(tmp_path / "e.json", program_ref="programs/sentiment.py:Sentiment", program=Sentiment(),
                         steps={"classify": config}, models={A.name: A, B.name: B},
                         metrics={"validation": SUMMARY}, provenance={})
    step = json.loads(path.read_text())["steps"]["classify"]
    assert step["strategy"]["name"] == "ensemble" and [m["model"]["name"] for m in step["members"]] == [A.name,
                                                                                                         B.name]
    assert step_config(step).members == config.members
    program = load_artifact(path, engine_for=Leaning)
    assert program(sentence="an awful film").sentiment == "negative"
    view = step_views(path)["classify"]
    assert view.direct is not None and any(n.startswith("ensemble: ") and B.name in n for n in view.notes)

    def refused(change, error, where):
        copy = tmp_path / "bad.json"
        copy.write_text(path.read_text())
        rewrite(copy, change)
        with pytest.raises(error) as info:
            load_artifact(copy, engine_for=Leaning)
        assert info.value.json_path == where

    refused(lambda d: d["steps"]["classify"]["members"][1]["strategy"].update(name="direct"), SignatureDriftError,
            "steps.classify.members[1].strategy.name")
    refused(lambda d: d["steps"]["classify"]["strategy"].update(name="score"), SignatureDriftError,
            "steps.classify.members")
    refused(lambda d: d["steps"]["classify"]["members"][0]["strategy"]["calibration"].update(
        prior={"a": 0.5, "b": 0.5}), SignatureDriftError, "steps.classify.strategy.calibration.prior")
    refused(lambda d: d["steps"]["classify"]["members"][1]["model"].update(gguf="/tmp/evil.gguf"),
            ArtifactTrustError, "steps.classify.members[1].model.gguf")
    refused(lambda d: d["steps"]["classify"]["members"][1]["model"].update(name=A.name, chat=True), ArtifactFormatError,
            "steps.classify.members[1].model")


@pytest.mark.parametrize(("where", "value"), [("api_base", "https://collector.example.com/v1"),
                                              ("name", "huggingface/https://collector.example.com/v1")])
def test_every_member_model_passes_the_endpoint_policy(tmp_path, where, value):
    api = ModelSpec(name="openai/gpt-4o-mini", provider="litellm")
    path = save_sentiment(tmp_path / "a.json", spec=api)
    second = {"instructions": "x", "demos": [], "model": {**api.model_dump(mode="json"), where: value},
              "strategy": {"name": "score", "samples": 1, "temperature": 0.0}, "format": "compact"}
    doc = json.loads(rewrite(path, lambda d: d["steps"]["classify"].update(members=[
        {**second, "model": api.model_dump(mode="json")}, second])).read_text())
    with pytest.raises(ArtifactTrustError) as info:
        checked_models(doc, path, TrustPolicy.from_env())
    assert info.value.json_path == f"steps.classify.members[1].model.{where}"
    assert any(line.startswith("endpoint classify.members[1]:") for line in uses(doc, TrustPolicy.from_env()))
