"""The optimizer on the real local models: budget, baselines, front, test report, no input mutation."""

import pytest

from optimizer.accounting import EngineMeter, metered
from optimizer.search.compile import Budget, SearchSettings, SpaceSettings, compile
from programs.sentiment import TASK, Sentiment, metric

pytestmark = pytest.mark.slow  # runs the local models


@pytest.fixture(scope="module")
def result_and_calls():
    program = Sentiment()
    with metered(EngineMeter()) as meter:
        result = compile(program, trainset=TASK.load("train", limit=30), valset=TASK.load("val", limit=10),
                         testset=TASK.load("test", limit=10), metric=metric, budget=Budget(calls=60),
                         search=SearchSettings(minibatch=5, seed=3, final_top=0),
                         space=SpaceSettings(strategies=("direct",), demo_draws=1), show_progress=False)
    return program, result, meter.calls


def test_compile_never_exceeds_its_call_budget_counted_at_the_engine(result_and_calls):
    _, result, calls = result_and_calls
    # every call during the search (proposals, bootstrapping, evaluation) is counted; the budget binds
    assert result.spent["calls"] <= 60
    assert result.spent["calls"] == 60  # the space is far larger than 60 calls: the compile ran out
    # the engine's own count also covers the final test report, which is outside the budget
    assert calls >= result.spent["calls"]


def test_compile_reports_baselines_front_and_test_split(result_and_calls):
    _, result, _ = result_and_calls
    assert {b.label for b in result.baselines} <= {"baseline local/smollm2-135m", "baseline local/gemma3-270m"}
    assert result.front and result.chosen in {t.variant_key for t in result.trials}
    assert {t.variant_key for t in result.test} >= set(result.front)
    for t in result.test:
        low, high = t.summary.score_ci
        assert low <= t.summary.score <= high and t.examples == 10


def test_compile_does_not_mutate_the_program(result_and_calls):
    program, _, _ = result_and_calls
    assert program.classify.demos == [] and program.classify.lm is None
    assert program.classify.signature.instructions == Sentiment().classify.signature.instructions
