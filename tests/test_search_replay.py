"""Search strategies on recorded real-model outputs (deterministic replay): on a small space, TPE and
coordinate ascent find the same best variant as exhaustive enumeration."""

import pytest

from tests.fixtures.search_case import replay_pool, run


@pytest.fixture(scope="module")
def exhaustive():
    return run(replay_pool(), "exhaustive")


def _best(result):
    full = result.best_full()
    return full[result.chosen].summary.score


def test_exhaustive_enumerates_the_whole_space(exhaustive):
    assert exhaustive.space.size() == 18
    assert len({t.variant_key for t in exhaustive.trials if t.stage == "minibatch"}) == 18


@pytest.mark.parametrize("strategy", ["tpe", "coordinate"])
def test_strategy_finds_the_exhaustive_best(exhaustive, strategy):
    result = run(replay_pool(), strategy, trials=30)
    assert result.chosen == exhaustive.chosen
    assert _best(result) == _best(exhaustive)


def test_same_seed_and_recording_give_the_same_result():
    first, second = run(replay_pool(), "tpe", trials=12), run(replay_pool(), "tpe", trials=12)
    assert [t.variant_key for t in first.trials] == [t.variant_key for t in second.trials]
    assert first.chosen == second.chosen and first.front == second.front


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_an_unlimited_search_exhausts_the_space_and_then_ends(exhaustive, sampler):
    # no trial or call limit: the samplers repeat themselves long before 18 distinct variants, and each
    # repeat is followed by an untried variant, so the search ends exactly when none is left
    result = run(replay_pool(), sampler, trials=None)
    minibatch = [t for t in result.trials if t.stage == "minibatch"]
    assert len({t.variant_key for t in minibatch}) == 18 and len(minibatch) < 200
    assert result.chosen == exhaustive.chosen


def test_a_result_saves_itself_as_an_artifact_also_after_a_json_round_trip(exhaustive, tmp_path):
    from optimizer.artifact import read_artifact, save_result
    from optimizer.records import CompileResult

    reloaded = CompileResult.model_validate_json(exhaustive.model_dump_json())
    assert set(reloaded.models) == {"local/smollm2-135m", "local/gemma3-270m"}
    doc = read_artifact(save_result(reloaded, tmp_path / "chosen.json"))
    steps = exhaustive.chosen_steps()
    assert doc["steps"]["classify"]["model"]["name"] == steps["classify"].model
    assert doc["steps"]["classify"]["signature"]["instructions"] == steps["classify"].instruction


@pytest.fixture(scope="module")
def compact_exhaustive():
    return run(replay_pool("compact"), "exhaustive", fmt="compact")


def test_a_replayed_local_model_takes_the_compact_regex_paths():
    """Adapters dispatch on the engine's capabilities: a replay of a local model is the local model to them."""
    from optimizer.adapters import CompactAdapter
    from optimizer.models.base import LOCAL, REGEX_METADATA_KEY, capabilities_of
    from programs.sentiment import Sentiment

    pool, signature = replay_pool(), Sentiment().named_predictors()[0][1].signature
    for model, delivery in (("local/smollm2-135m", "chat"), ("local/gemma3-270m", "raw")):
        assert capabilities_of(pool.lm(model)) == LOCAL
        kwargs, taken = CompactAdapter()._prepare(pool.lm(model), {}, signature)
        assert taken == delivery and REGEX_METADATA_KEY in kwargs["metadata"]


def test_compact_format_search_replays_and_finds_the_exhaustive_best(compact_exhaustive):
    assert len({t.variant_key for t in compact_exhaustive.trials if t.stage == "minibatch"}) == 18
    assert {s.format for t in compact_exhaustive.trials for s in t.steps.values()} == {"compact"}
    result = run(replay_pool("compact"), "tpe", trials=30, fmt="compact")
    assert result.chosen == compact_exhaustive.chosen and _best(result) == _best(compact_exhaustive)


def test_the_report_lists_a_baseline_on_the_front_once(exhaustive):
    from optimizer.results import markdown_report

    baseline = exhaustive.baselines[0]
    front = [baseline.variant_key, *(k for k in exhaustive.front if k != baseline.variant_key)]
    result = exhaustive.model_copy(update={"front": front})
    validation = markdown_report(result).split("## Test split")[0]
    rows = [line for line in validation.splitlines() if line.startswith(f"| {baseline.label} ")]
    assert len(rows) == 1


def test_a_limited_search_spends_its_whole_budget_when_the_space_has_more():
    import tempfile

    from optimizer import runtime

    runtime.configure(tempfile.mkdtemp())  # nothing cached: every call is paid
    result = run(replay_pool(), "tpe", calls=100)
    assert result.spent["calls"] == 100
    assert len({t.variant_key for t in result.trials if t.stage == "minibatch"}) < 18
