"""The final selection (optimizer.search.selection): its holdout, its sizing, and a compile in which the
validation winner is lucky. Two fake models: ``lucky`` without demos is right on every validation example and
wrong on every training example (with demos, wrong on all), ``steady`` is right on all but a few validation
examples and on every training example. Validation alone ships ``lucky``; re-scoring the top 4 (the three
``lucky`` variants without demos, one ``steady``) on held-out training examples ships ``steady``."""

from __future__ import annotations

import tempfile

import dspy
import optuna
import pytest

from optimizer import runtime
from optimizer.accounting import EngineMeter, metered
from optimizer.models import ModelPool, ModelSpec
from optimizer.models.base import API as API_CAPABILITIES
from optimizer.models.base import Engine, Generation
from optimizer.models.prompt import chat_messages
from optimizer.records import TrialRecord
from optimizer.search.compile import compile
from optimizer.search.selection import MIN_HOLDOUT, affordable, holdout, top_validated
from optimizer.search.settings import Budget, SearchSettings, SpaceSettings
from optimizer.space.variant import StepChoice, StepConfig, Variant
from optimizer.summary import Summary
from programs.sentiment import TASK, Sentiment, metric

LUCKY, STEADY = ModelSpec(name="openai/lucky", provider="litellm"), ModelSpec(name="openai/steady", provider="litellm")
TRAIN, VAL = TASK.load("train", limit=60), TASK.load("val", limit=12)
WRONG_FOR_STEADY = 3  # validation examples steady gets wrong


class Fake(Engine):
    """Answers the last user turn's sentence: by its truth, flipped where the model's rule says so."""

    capabilities = API_CAPABILITIES

    def generate(self, request):
        turns = [m["content"] for m in chat_messages(request) if m["role"] == "user"]
        query, demos = turns[-1], len(turns) > 1
        val = {ex.sentence: ex.sentiment for ex in VAL}
        truth = {ex.sentence: ex.sentiment for ex in TRAIN} | val
        sentence = max((s for s in truth if s in query), key=len)
        if self.spec is LUCKY:
            right = sentence in val and not demos
        else:
            right = sentence not in [ex.sentence for ex in VAL[:WRONG_FOR_STEADY]]
        label = truth[sentence] if right else {"positive": "negative", "negative": "positive"}[truth[sentence]]
        return Generation(f'{{"sentiment": "{label}"}}', "stop", 5, 5, 0.0)


def _compile(final_top: int, storage: str | None = None, calls: int = 400):
    pool = ModelPool([LUCKY, STEADY], engine_for=Fake)
    return compile(Sentiment(), trainset=TRAIN, valset=VAL, metric=metric, models=pool, budget=Budget(calls=calls),
                   search=SearchSettings(sampler="exhaustive", objectives=("quality",), minibatch=12, seed=0,
                                         promote_fraction=1.0, final_top=final_top, final_share=0.5),
                   space=SpaceSettings(proposer=None, teacher=None, formats=("json",), strategies=("direct",),
                                       demo_draws=1),
                   storage=storage, show_progress=False)


def _model(result) -> str:
    return result.chosen_steps()["classify"].model


def test_validation_alone_ships_the_lucky_model_and_the_final_selection_the_steady_one():
    runtime.configure(tempfile.mkdtemp())
    assert _model(_compile(final_top=0)) == LUCKY.name
    runtime.configure(tempfile.mkdtemp())
    with metered(EngineMeter()) as meter:
        result = _compile(final_top=4)
    finals = result.finals()
    assert len(finals) == 4 and result.chosen in finals and _model(result) == STEADY.name
    held = next(iter(finals.values())).examples - len(VAL)
    assert held >= MIN_HOLDOUT and all(r.examples == len(VAL) + held for r in finals.values())
    assert result.spent["calls"] <= 400 and meter.calls == result.spent["calls"]  # no test split here
    assert any(r.stage == "full" and r.variant_key == result.chosen for r in result.trials)  # lineage kept


def test_a_resumed_compile_redoes_no_final_record(tmp_path):
    runtime.configure(tempfile.mkdtemp())
    storage = f"sqlite:///{tmp_path / 's.db'}"
    first = _compile(final_top=2, storage=storage)
    with metered(EngineMeter()) as meter:
        again = _compile(final_top=2, storage=storage)
    assert meter.calls == 0 and again.chosen == first.chosen and again.finals().keys() == first.finals().keys()
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
    assert sum(k.startswith("final:") for k in study.user_attrs) == 2


def test_too_small_a_remaining_budget_skips_the_stage_and_chooses_by_validation():
    runtime.configure(tempfile.mkdtemp())
    result = _compile(final_top=3, calls=60)  # 30 calls kept: fewer than MIN_HOLDOUT examples for 3 variants
    assert not result.finals() and _model(result) == LUCKY.name


def _record(number: int, score: float, demos: list[dict], cost: float = 1e-5, calls: int = 10) -> TrialRecord:
    summary = Summary(examples=10, score=score, score_ci=(score, score), validity_rate=1.0, cost_per_example=cost,
                      latency_p50_s=0.1, latency_p95_s=0.1, lm_calls=calls, cached_calls=0, input_tokens=0,
                      output_tokens=0)
    step = StepChoice(instruction="original", demos="zero", model="m", strategy="direct", format="json")
    config = StepConfig(instruction="i", demos=demos, model="m", strategy="direct", format="json")
    return TrialRecord(number=number, variant_key=f"v{number}", variant=Variant(steps={"classify": step}),
                       steps={"classify": config}, stage="full", examples=10, summary=summary)


def test_top_validated_orders_by_score_then_cost_then_trial_and_drops_failed_variants():
    records = [_record(0, 0.5, []), _record(1, 0.7, []), _record(2, 0.7, [], cost=1e-6), _record(3, 0.6, [])]
    assert [r.number for r in top_validated(records, 3)] == [2, 1, 3]
    failed = _record(4, 0.9, []).model_copy(update={"summary": records[0].summary.model_copy(
        update={"score": 0.9, "call_failure_rate": 1.0})})
    assert failed not in top_validated([*records, failed], 2)
    assert [r.number for r in top_validated(records, 2, max_cost=5e-6)] == [2]


def test_the_holdout_leaves_out_every_example_any_top_variant_shows_and_keeps_training_order():
    train = [dspy.Example(sentence=f"s{i}", sentiment="positive").with_inputs("sentence") for i in range(6)]
    records = [_record(0, 0.5, [{"sentence": "s1", "sentiment": "positive"}]),
               _record(1, 0.4, [{"sentence": "s4", "sentiment": "positive"}])]
    assert [ex.sentence for ex in holdout(train, records, ["sentence"])] == ["s0", "s2", "s3", "s5"]


@pytest.mark.parametrize(("remaining", "available", "expected"), [(None, 50, 50), (100, 50, 50), (30, 50, 15)])
def test_the_holdout_is_what_the_remaining_calls_pay_for(remaining, available, expected):
    records = [_record(0, 0.5, []), _record(1, 0.4, [])]  # one call per example each
    assert affordable(records, remaining, available) == expected


@pytest.mark.slow  # runs the local models
def test_the_final_selection_on_the_local_models_rescores_the_top_two_within_the_budget():
    with metered(EngineMeter()) as meter:
        result = compile(Sentiment(), trainset=TASK.load("train", limit=40), valset=TASK.load("val", limit=10),
                         metric=metric, budget=Budget(calls=120),
                         search=SearchSettings(minibatch=5, seed=3, final_top=2, final_share=0.5),
                         space=SpaceSettings(formats=("compact",), strategies=("direct", "score-bc")),
                         show_progress=False)
    finals = result.finals()
    assert len(finals) == 2 and result.chosen in finals
    (examples,) = {r.examples for r in finals.values()}
    assert examples >= 10 + MIN_HOLDOUT
    assert result.spent["calls"] <= 120 and meter.calls == result.spent["calls"]
