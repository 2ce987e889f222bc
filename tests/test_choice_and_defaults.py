"""The shipped variant under noise (paired ties, validity among them, the stated estimate) and the
budget-scaled defaults a compile fills when the user leaves a setting open."""

import numpy as np
import optuna
import pytest

from optimizer.records import TrialRecord
from optimizer.search.choice import choose_paired
from optimizer.search.defaults import DEFAULT_STRATEGIES, scaled, space_note
from optimizer.search.samplers import param_choices, params_of, untried
from optimizer.search.settings import Budget, SearchSettings, SpaceSettings
from optimizer.space.variant import SearchSpace, StepChoice, StepConfig, StepSpace, Variant
from optimizer.statistics import mean_of_first, micro_f1
from optimizer.summary import Summary


def _record(key: str, scores: list[float], validity: float = 1.0, cost: float = 1e-5, stage: str = "full",
            rows: list[list[float]] | None = None, score: float | None = None) -> TrialRecord:
    value = sum(scores) / len(scores) if score is None else score
    summary = Summary(examples=len(scores), score=value, score_ci=[value - 0.1, value + 0.1], validity_rate=validity,
                      cost_per_example=cost, latency_p50_s=0.1, latency_p95_s=0.1, lm_calls=len(scores),
                      cached_calls=0, input_tokens=0, output_tokens=0, scores=scores, rows=rows or [])
    step = StepChoice(instruction="original", demos="zero", model="m", strategy="direct", format="json")
    config = StepConfig(instruction="i", model="m")
    return TrialRecord(number=0, variant_key=key, variant=Variant(steps={"s": step}), steps={"s": config},
                       stage=stage, examples=len(scores), summary=summary)


def test_a_clear_leader_ships_and_its_estimate_is_stated():
    leader = _record("lead", [1.0] * 90 + [0.0] * 10)
    other = _record("other", [1.0] * 50 + [0.0] * 50)
    choice = choose_paired([other, leader], mean_of_first)
    assert choice.chosen == "lead" and choice.tied == []
    assert choice.note == "chosen lead: 0.900 [0.800, 1.000] on 100 examples (validation), 100% valid"


def test_among_statistically_tied_variants_the_more_valid_ships_and_the_note_says_why():
    base = [1.0] * 60 + [0.0] * 40
    leader = _record("lead", [*base[:-1], 1.0], validity=0.88)  # one example better, 12% invalid
    valid = _record("valid", base, validity=1.0)
    choice = choose_paired([leader, valid], mean_of_first)
    assert choice.leader == "lead" and choice.tied == ["valid"] and choice.chosen == "valid"
    assert "statistically tied with 1 other variant" in choice.note and "as the more valid" in choice.note


def test_equal_validity_ships_the_cheaper_of_tied_variants_and_an_untied_cheaper_one_never():
    base = [1.0] * 60 + [0.0] * 40
    choice = choose_paired([_record("b", base, cost=1e-7), _record("a", [*base[:-1], 1.0])], mean_of_first)
    assert choice.chosen == "b" and choice.tied == ["b"] and "as the cheaper" in choice.note
    worse = _record("worse", [1.0] * 30 + [0.0] * 70, cost=1e-9)
    assert choose_paired([worse, _record("a", base)], mean_of_first).chosen == "a"
    same = choose_paired([_record("b", base), _record("a", [*base[:-1], 1.0])], mean_of_first)
    assert same.chosen == "a" and "the leader ships" in same.note


def test_records_on_different_examples_are_never_called_tied():
    leader = _record("lead", [1.0] * 61 + [0.0] * 39, validity=0.9)
    elsewhere = _record("elsewhere", [1.0] * 60 + [0.0] * 40 + [1.0], validity=1.0)
    assert choose_paired([leader, elsewhere], mean_of_first).chosen == "lead"


def test_ties_under_micro_f1_resample_the_corpus_rows():
    rows = [[1.0, 0.0, 0.0]] * 30 + [[0.0, 1.0, 1.0]] * 10
    more = [[1.0, 0.0, 0.0]] * 31 + [[0.0, 1.0, 1.0]] * 9
    a = _record("a", [1.0] * 40, rows=more, score=micro_f1(np.asarray(more)), validity=0.9)
    b = _record("b", [1.0] * 40, rows=rows, score=micro_f1(np.asarray(rows)))
    choice = choose_paired([a, b], micro_f1)
    assert choice.leader == "a" and choice.tied == ["b"] and choice.chosen == "b"


@pytest.mark.parametrize(("calls", "draws", "final_top", "validation"),
                         [(150, 1, 0, 30), (600, 4, 0, 50), (1000, 4, 5, 83), (5000, 8, 5, 200), (None, 8, 5, 200)])
def test_open_settings_are_filled_for_the_budget(calls, draws, final_top, validation):
    space, search, reasons = scaled(SpaceSettings(), SearchSettings(), Budget(calls=calls), 200)
    assert space.strategies == DEFAULT_STRATEGIES and space.demo_draws == draws
    assert search.final_top == final_top and search.final_share == 0.25 and search.validation == validation
    assert space.label_words == (("signature",) if calls is not None and calls < 300 else ("signature", "auto"))
    assert len(reasons) == 4 + (validation < 200)


def test_given_settings_are_kept_as_given():
    given = SpaceSettings(strategies=("direct",), demo_draws=2, label_words=())
    space, search, reasons = scaled(given, SearchSettings(final_top=0, final_share=0.1, validation=60),
                                    Budget(calls=5000), 200)
    assert (space.strategies, space.demo_draws, search.final_top, search.final_share) == (("direct",), 2, 0, 0.1)
    assert reasons == []


def _space() -> SearchSpace:
    step = StepSpace(instructions={"original": "i", "r": "j"}, demo_sets={"zero": [], "d": []}, labels_only=True)
    return SearchSpace(steps={"s": step}, models=["m1", "m2"], strategies=["direct", "score-bc"], formats=["json"])


def test_the_space_note_states_size_budget_and_reasons():
    _, _, reasons = scaled(SpaceSettings(), SearchSettings(), Budget(calls=600), 60)
    note = space_note(_space(), Budget(calls=600), reasons)
    assert note.startswith("space: 16 variants for 600 calls; filled for the budget: label scoring")
    assert "4 label-balanced demo draws per size for 600 calls" in note and "no final re-scoring below 800" in note


def test_untried_proposes_every_variant_once_then_none():
    space = _space()
    study = optuna.create_study()
    seen = set()
    for i in range(space.size()):
        params = untried(study, space, seed=i)
        assert params is not None and tuple(sorted(params.items())) not in seen
        seen.add(tuple(sorted(params.items())))
        study.enqueue_trial(params)
        trial = study.ask()
        for name, options in param_choices(space).items():
            trial.suggest_categorical(name, options)
        study.tell(trial, 0.0)
    assert untried(study, space, seed=99) is None
    assert len(seen) == space.size() == 16
    assert params_of(Variant(steps={"s": StepChoice(instruction="r", demos="d", model="m1")}))["s:model"] == "m1"
