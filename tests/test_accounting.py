"""Accounting: every call recorded, cache hits marked and priced, totals per model and per step."""

import dspy
import pytest

from optimizer.accounting import EngineMeter, metered
from optimizer.evaluate import bootstrap_ci, evaluate
from programs.trec import TASK, QuestionClassifier, metric


@pytest.mark.slow
def test_two_step_program_is_accounted_per_step_and_cache_hits_are_marked(pool):
    rows = TASK.load("test", limit=4)
    lm = pool.lm("local/smollm2-135m")
    with metered(EngineMeter()) as meter:
        first = evaluate(QuestionClassifier(), rows, metric, lm=lm, show_progress=False).summary()
        paid = meter.calls
        again = evaluate(QuestionClassifier(), rows, metric, lm=lm, show_progress=False).summary()
    assert paid == first.lm_calls == 8 and first.cached_calls == 0
    assert set(first.by_step) == {"coarse_step", "fine_step"}
    assert first.by_step["coarse_step"]["calls"] == 4
    assert meter.calls == paid  # the second run reached no model
    assert again.cached_calls == again.lm_calls == 8
    # a cache hit still reports what the call costs when paid: same tokens and cost as the first run
    assert again.input_tokens == first.input_tokens > 0
    assert abs(again.cost_per_example - first.cost_per_example) < 1e-12
    assert again.score == first.score


def test_bootstrap_ci_contains_the_mean_and_shrinks_with_n():
    small, large = [1, 0] * 10, [1, 0] * 200
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s < 0.5 < hi_s and lo_l < 0.5 < hi_l and (hi_l - lo_l) < (hi_s - lo_s)
    assert bootstrap_ci([1.0] * 5) == (1.0, 1.0)


def test_evaluator_records_failures_instead_of_raising():
    class Boom(dspy.Module):
        def forward(self, question):
            raise ValueError("adapter could not parse")

    ev = evaluate(Boom(), TASK.load("test", limit=3), metric, show_progress=False)
    assert [r.valid for r in ev.results] == [False] * 3
    assert ev.results[0].error_type == "InvalidOutput" and ev.summary().score == 0.0
