"""progopt against DSPy's best optimizer in a sweep's report: the rival is the best DSPy optimizer cell of the
same program, seed and test split (never ZeroShot), the lead is the mean per-example difference, and its CI
is paired by example. Built from stored outcomes, no model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.sweep import head_to_head
from optimizer.sweep.cell import CellOutcome, write_json
from optimizer.sweep.config import CellSettings, ProgramSettings
from optimizer.sweep.report import group_rows, write_report

SST2 = ProgramSettings(ref="programs/sentiment.py:Sentiment")
NEWS = ProgramSettings(ref="programs/news.py:NewsTopic")


def _cell(optimizer: str, scores: list[float], *, seed: int = 0, program: ProgramSettings = SST2,
          models: tuple[str, ...] = ("local/smollm2-135m",), **extra) -> CellOutcome:
    settings = CellSettings(program=program, optimizer=optimizer, seed=seed, models=models, **extra)
    return CellOutcome(cell_id=settings.cell_id(), group=settings.group(), label=settings.label(),
                       settings=settings, state="done", test_scores=scores,
                       test={"score": float(np.mean(scores)), "cost_per_example": 1e-5, "latency_p50_s": 0.1,
                             "latency_p95_s": 0.2, "validity_rate": 1.0})


def _progopt(scores: list[float], **kw) -> CellOutcome:
    return _cell("progopt", scores, models=("local/smollm2-135m", "local/gemma3-270m"), budget_from="dspy-max",
                 **{"strategies": ("direct",), "demo_draws": 1, "final_top": 0, "label_words": (), **kw})


def test_the_rival_is_the_best_dspy_optimizer_of_the_same_seed_and_never_zero_shot():
    cells = [_cell("ZeroShot", [1, 1, 1, 1]), _cell("MIPROv2", [1, 0, 0, 0]), _cell("GEPA", [1, 1, 0, 0]),
             _cell("GEPA", [1, 1, 1, 0], seed=1), _cell("LabeledFewShot", [1, 1, 1, 1], program=NEWS),
             _progopt([1, 1, 1, 0])]
    [lead] = head_to_head.leads(cells)
    assert lead.rivals == ((0, "GEPA[smollm2-135m]", 0.5),)  # not ZeroShot (1.0), not seed 1, not NewsTopic
    assert lead.lead == pytest.approx(0.25) and lead.progopt == pytest.approx(0.75)


def test_the_ci_is_paired_by_example():
    """The same examples right and wrong, plus 20 more right: a lead of exactly 0.1 on every resample, although
    each program's own CI is about 0.3 wide."""
    dspy = [1.0, 0.0] * 100
    better = [1.0 if i % 2 == 0 or i < 40 else 0.0 for i in range(200)]
    [lead] = head_to_head.leads([_cell("MIPROv2", dspy), _progopt(better)])
    assert lead.lead == pytest.approx(0.1)
    low, high = lead.ci
    assert 0.05 < low <= 0.1 <= high < 0.15  # one-sided gains only: the CI stays above 0


def test_seeds_average_their_differences_per_example_and_misaligned_cells_are_left_out():
    cells = [_cell("MIPROv2", [0, 0, 0, 0]), _cell("GEPA", [1, 1, 1, 1], seed=1),
             _progopt([1, 1, 0, 0]), _progopt([1, 1, 1, 1], seed=1),
             _progopt([1, 1, 1], seed=2), _cell("GEPA", [0, 0, 0, 0], seed=2)]  # seed 2: 3 scores against 4
    [lead] = head_to_head.leads(cells)
    assert [seed for seed, _, _ in lead.rivals] == [0, 1]
    assert lead.lead == pytest.approx((0.5 + 0.0) / 2) and lead.progopt == pytest.approx(0.75)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from([-1.0, 0.0, 1.0]), min_size=2, max_size=40))
def test_a_seed_that_repeats_another_adds_no_certainty(diffs):
    """The seeds share their test examples: a second seed with the very same differences is no new evidence,
    so the CI (and the main table's) must stay as it was, not narrow by √2 as pooled pairs did."""
    mine = [max(d, 0.0) for d in diffs]
    theirs = [max(-d, 0.0) for d in diffs]
    one = [_cell("GEPA", theirs), _progopt(mine)]
    two = one + [_cell("GEPA", theirs, seed=1), _progopt(mine, seed=1)]
    [single], [double] = head_to_head.leads(one), head_to_head.leads(two)
    assert double.ci == pytest.approx(single.ci) and double.lead == pytest.approx(single.lead)
    [row_one] = [r for r in group_rows(one) if r["optimizer"] == "progopt"]
    [row_two] = [r for r in group_rows(two) if r["optimizer"] == "progopt"]
    assert row_two["ci"] == pytest.approx(row_one["ci"]) and row_two["seeds"] == 2


def test_seed_means_refuses_runs_on_different_examples():
    assert head_to_head.seed_means([[1.0, 0.0], [0.0, 0.0]]) == [0.5, 0.0]
    with pytest.raises(ValueError, match="different test examples"):
        head_to_head.seed_means([[1.0, 0.0], [1.0]])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.5, 1.0]), st.sampled_from([0.0, 0.5, 1.0])), min_size=2,
                max_size=60))
def test_the_lead_is_the_difference_of_the_two_test_scores_and_lies_in_its_ci(pairs):
    mine, theirs = [a for a, _ in pairs], [b for _, b in pairs]
    [lead] = head_to_head.leads([_cell("BootstrapFewShotWithRandomSearch", theirs), _progopt(mine)])
    assert lead.lead == pytest.approx(np.mean(mine) - np.mean(theirs))
    assert lead.ci[0] - 1e-9 <= lead.lead <= lead.ci[1] + 1e-9


def test_the_report_adds_the_table_only_when_progopt_has_a_rival(tmp_path):
    for cell in (_cell("MIPROv2", [1.0, 0.0]), _cell("ZeroShot", [0.0, 0.0], program=NEWS),
                 _progopt([0.0, 0.0], program=NEWS), _progopt([1.0, 1.0])):
        write_json(tmp_path / "cells" / cell.cell_id / "outcome.json", cell.model_dump(mode="json"))
    paths = write_report(tmp_path)
    _, table = paths["md"].read_text().split("## progopt against DSPy's best optimizer")
    assert "| Sentiment | progopt@1xdspy-max | 1 | 1.000 | seed 0: MIPROv2[smollm2-135m] 0.500 | +50.0 |" in table
    assert "| NewsTopic |" not in table  # its only DSPy cell is ZeroShot
    assert "![progopt's leads](head_to_head.png)" in table and paths["leads"].stat().st_size > 0


def test_without_a_dspy_rival_the_report_has_neither_table_nor_plot(tmp_path):
    for cell in (_cell("ZeroShot", [0.0, 1.0]), _progopt([1.0, 1.0])):
        write_json(tmp_path / "cells" / cell.cell_id / "outcome.json", cell.model_dump(mode="json"))
    paths = write_report(tmp_path)
    assert "DSPy's best" not in paths["md"].read_text() and not paths["leads"].exists()
    assert head_to_head.markdown([]) == ""


def _corpus(cell: CellOutcome, rows: list[list[float]]) -> CellOutcome:
    score = head_to_head.AGGREGATES["micro_f1"](np.asarray(rows))
    return cell.model_copy(update={"test": {**cell.test, "score": score, "rows": rows, "aggregate": "micro_f1"}})


def test_a_corpus_metric_leads_by_the_difference_of_micro_f1_not_of_per_sentence_scores():
    # the rival extracts nothing: full per-sentence credit on the two empty sentences, micro F1 0
    gold = [[0.0, 0.0, 2.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    mine = [[2.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    rival = _corpus(_cell("MIPROv2", [0.0, 0.0, 1.0, 1.0]), gold)
    cell = _corpus(_progopt([1.0, 0.0, 0.0, 1.0]), mine)
    [lead] = head_to_head.leads([rival, cell])
    assert rival.test["score"] == 0.0 and lead.lead == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    assert lead.ci[0] <= lead.lead <= lead.ci[1]
    [row] = [r for r in group_rows([cell]) if r["optimizer"] == "progopt"]
    assert row["ci"][0] <= cell.test["score"] <= row["ci"][1]
