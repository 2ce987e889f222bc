"""Two compiles in one process, on two threads: each counts only its own engine calls, against its own
exact budget (replayed real-model outputs, so no model runs)."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from optimizer.accounting import BudgetExhausted, EngineMeter, active_meter, metered
from optimizer.records import CompileResult
from tests.fixtures.search_case import replay_pool, run


def _compile(calls: int, strategy: str) -> tuple[CompileResult, int]:
    assert active_meter() is None  # a new thread starts outside every compile's context
    with metered(EngineMeter()) as meter:
        result = run(replay_pool(), strategy, calls=calls, study_name=f"concurrent-{strategy}-{calls}")
    return result, meter.calls


def test_two_concurrent_compiles_spend_exactly_their_own_budgets():
    with ThreadPoolExecutor(2) as threads:
        small, large = threads.submit(_compile, 23, "random"), threads.submit(_compile, 41, "tpe")
        (small_result, small_calls), (large_result, large_calls) = small.result(), large.result()
    assert (small_calls, small_result.spent["calls"]) == (23, 23)
    assert (large_calls, large_result.spent["calls"]) == (41, 41)
    assert active_meter() is None


def test_a_meter_counts_in_its_parent_and_is_bound_by_the_parent_limit():
    parent = EngineMeter(max_calls=3)
    child = EngineMeter(max_calls=10, parent=parent)
    for _ in range(3):
        child.reserve()
    assert (child.calls, parent.calls, child.exhausted()) == (3, 3, True)
    with pytest.raises(BudgetExhausted, match="3 calls"):
        child.reserve()
    assert (child.calls, parent.calls) == (3, 3)  # the refused call is counted nowhere
