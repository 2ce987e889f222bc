"""``budget_from: dspy-max``: a progopt cell's budget is the most LM calls a DSPy optimizer used on its program
and seed, so a sweep run in pieces by seed never waits on another piece's cells."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from optimizer.sweep.cell import CellOutcome, matched_budget, write_json
from optimizer.sweep.config import CELLS_FILE, CellSettings, ProgramSettings

PROGRAM = ProgramSettings(ref="programs/sentiment.py:Sentiment")


def _cell(optimizer: str, seed: int, **kw) -> CellSettings:
    return CellSettings(program=PROGRAM, optimizer=optimizer, seed=seed, **kw)


def _finish(cells: Path, settings: CellSettings, calls: int) -> None:
    write_json(cells / settings.cell_id() / "outcome.json", CellOutcome(
        cell_id=settings.cell_id(), group="g", label=settings.optimizer, settings=settings, state="done",
        compile_calls=calls).model_dump(mode="json"))


def test_the_budget_matches_the_largest_dspy_compile_of_the_same_seed_without_waiting_for_other_seeds(tmp_path):
    progopt = _cell("progopt", 0, budget_from="dspy-max", budget_fraction=0.5)
    seed0 = [_cell("ZeroShot", 0), _cell("MIPROv2", 0), _cell("GEPA", 0)]
    seed1 = [_cell("MIPROv2", 1), _cell("GEPA", 1)]  # another piece: never finished here
    every = [progopt, *seed0, *seed1]
    write_json(tmp_path / CELLS_FILE, [c.model_dump(mode="json") for c in every])
    cells = tmp_path / "cells"
    _finish(cells, seed0[0], 0)
    _finish(cells, seed0[1], 690)

    budget: list[int] = []
    waiter = threading.Thread(target=lambda: budget.append(matched_budget(progopt, cells, wait_s=0.01)))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and not budget  # GEPA of seed 0 is still running: wait for it
    _finish(cells, seed0[2], 734)
    waiter.join(5)
    assert budget == [367]  # half of GEPA's 734, seed 1 ignored


def test_the_wait_for_the_dspy_cells_is_shown_and_not_counted_as_compile_time(tmp_path, monkeypatch):
    from optimizer.sweep import cell as cell_module

    clock = [1000.0]
    seen: list[str] = []

    def matched(settings, cells):  # the DSPy cells take an hour to finish
        seen.append(json.loads((cells / settings.cell_id() / "status.json").read_text())["state"])
        clock[0] += 3600
        return 42

    def task(settings):
        clock[0] += 5
        raise ValueError("no data here")

    monkeypatch.setattr(cell_module.time, "time", lambda: clock[0])
    monkeypatch.setattr(cell_module, "matched_budget", matched)
    monkeypatch.setattr(cell_module, "cell_task", task)
    progopt = _cell("progopt", 0, budget_from="dspy-max")
    outcome = cell_module.run_cell(progopt, tmp_path / "cells" / progopt.cell_id(), tracking_uri="none")
    assert seen == ["waiting"]
    assert outcome.state == "failed" and "no data here" in outcome.error
    assert outcome.compile_seconds == 5  # the hour of waiting is not the compile's


def test_a_worker_puts_back_a_cell_whose_budget_cells_are_queued_behind_it(tmp_path, monkeypatch):
    """The deadlock of 2026-12-01: a killed run's DSPy cells were re-queued behind its progopt cells, and
    both workers held a progopt cell waiting for DSPy cells no worker was free to run."""
    from optimizer.sweep import executors

    progopt = _cell("progopt", 0, budget_from="dspy-max")
    gepa = _cell("GEPA", 0)
    write_json(tmp_path / CELLS_FILE, [c.model_dump(mode="json") for c in (progopt, gepa)])
    job = executors.CellJob(output=tmp_path, project=tmp_path, storage=None,
                            ledger=f"sqlite:///{tmp_path / 'sweep.db'}", ledger_name="sweep-t", tracking_uri="none",
                            parent_run_id=None, threads=1)
    executors.enqueue(job, [progopt])  # queued first: the DSPy cell that decides its budget comes after it
    executors.enqueue(job, [gepa])
    ran: list[str] = []

    def run_cell(settings, folder, **_):
        assert not executors.waiting_on(settings, tmp_path / "cells")  # it would wait forever here
        ran.append(settings.optimizer)
        _finish(tmp_path / "cells", settings, 600)
        return CellOutcome(cell_id=settings.cell_id(), group="g", label="x", settings=settings, state="done")

    monkeypatch.setattr(executors, "run_cell", run_cell)
    monkeypatch.setattr(executors, "DEFER_WAIT_S", 0)
    executors.claim_and_run(job, {c.cell_id(): c for c in (progopt, gepa)})
    assert ran == ["GEPA", "progopt"]
