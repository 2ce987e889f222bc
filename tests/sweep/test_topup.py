"""experiments/topup_test.py: how a finished cell's test summary is extended with rows scored later."""

from experiments.topup_test import merged
from optimizer.evaluate import Evaluation, ExampleResult

FIRST = {"examples": 2, "score": 0.5, "score_ci": [0.0, 1.0], "validity_rate": 1.0, "cost_per_example": 0.1,
         "latency_p50_s": 1.0, "latency_p95_s": 2.0, "lm_calls": 2, "cached_calls": 0, "input_tokens": 10,
         "output_tokens": 4, "truncations": 0, "failure_rate": 0.0, "call_failure_rate": 0.0,
         "mean_confidence": None}


def _extra() -> Evaluation:
    return Evaluation([ExampleResult(0, 0.0, False, None, [], error="bad", error_type="InvalidOutput"),
                       ExampleResult(1, 0.0, True, {"x": 1}, [])])


def test_scores_are_pooled_rates_weighted_counts_summed_and_latency_kept_from_the_first_run():
    out = merged(FIRST, [1.0, 0.0, 0.0, 0.0], _extra(), "abc1234")
    assert out["examples"] == 4 and out["score"] == 0.25
    assert out["validity_rate"] == 0.75 and out["failure_rate"] == 0.25 and out["cost_per_example"] == 0.05
    assert out["lm_calls"] == 2 and out["input_tokens"] == 10  # the added rows here made no calls
    assert (out["latency_p50_s"], out["latency_p95_s"], out["latency_examples"]) == (1.0, 2.0, 2)
    assert out["score_ci"][0] < 0.25 < out["score_ci"][1]
    assert out["topped_up"]["rows"] == [2, 4] and out["topped_up"]["commit"] == "abc1234"


def test_a_second_top_up_keeps_the_row_count_its_latency_was_measured_on():
    once = merged(FIRST, [1.0, 0.0, 0.0, 0.0], _extra(), "a")
    twice = merged(once, [1.0, 0.0, 0.0, 0.0, 0.0, 0.0], _extra(), "b")
    assert twice["examples"] == 6 and twice["latency_examples"] == 2 and twice["topped_up"]["rows"] == [4, 6]
