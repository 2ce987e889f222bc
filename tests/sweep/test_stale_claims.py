"""A restarted sweep resumes the cells a stopped one left running, even while a cell that waits for their
budget (``budget_from``) keeps putting itself back on the ledger."""

from __future__ import annotations

import threading
import time

import optuna

from optimizer.sweep import executors
from optimizer.sweep.cell import CellOutcome, write_json
from optimizer.sweep.config import CellSettings

DSPY = CellSettings.model_validate({"program": {"ref": "programs/sentiment.py:Sentiment"}, "optimizer": "ZeroShot",
                                    "models": ["local/smollm2-135m"]})
PROGOPT = CellSettings.model_validate({"program": {"ref": "programs/sentiment.py:Sentiment"}, "optimizer": "progopt",
                                       "budget_from": "dspy-max"})


FEW_SHOT = DSPY.model_copy(update={"optimizer": "LabeledFewShot"})
MIPRO = DSPY.model_copy(update={"optimizer": "MIPROv2"})


def _job(tmp_path, monkeypatch) -> executors.CellJob:
    """A one-process ledger on SQLite with short heartbeats and waits."""
    for name, value in (("GRACE_S", 1), ("HEARTBEAT_S", 1), ("DEFER_WAIT_S", 0.1), ("IDLE_WAIT_S", 0.1)):
        monkeypatch.setattr(executors, name, value)
    return executors.CellJob(output=tmp_path, project=tmp_path, storage=None, ledger=f"sqlite:///{tmp_path / 'l.db'}",
                             ledger_name="ledger", tracking_uri="none", parent_run_id=None, threads=1)


def _fake_cells(job: executors.CellJob, monkeypatch) -> list[str]:
    """Cells finish at once, in the order returned; a progopt cell waits for the ZeroShot one."""
    ran: list[str] = []

    def fake_run(settings, folder, **kwargs):
        ran.append(settings.optimizer)
        outcome = CellOutcome(cell_id=settings.cell_id(), group="g", label=settings.optimizer, settings=settings,
                              state="done")
        write_json(folder / "outcome.json", outcome.model_dump(mode="json"))
        return outcome

    monkeypatch.setattr(executors, "run_cell", fake_run)
    monkeypatch.setattr(executors, "waiting_on", lambda settings, _: [] if settings.optimizer != "progopt" or (
        job.folder(DSPY.cell_id()) / "outcome.json").exists() else [DSPY.cell_id()])
    return ran


def _started_before(job: executors.CellJob, cell: CellSettings) -> None:
    """What a killed run leaves: the cell's start is recorded, its outcome is not."""
    folder = job.folder(cell.cell_id())
    folder.mkdir(parents=True)
    (folder / "runs.jsonl").write_text('{"pid": 1}\n')


def _run_all(job: executors.CellJob, cells: list[CellSettings]) -> None:
    worker = threading.Thread(target=executors.claim_and_run, args=(job, {c.cell_id(): c for c in cells}),
                              daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the cells were never all claimed"


def test_a_dead_workers_cell_is_claimed_again_while_a_deferred_cell_waits_for_it(tmp_path, monkeypatch):
    job = _job(tmp_path, monkeypatch)
    ran = _fake_cells(job, monkeypatch)
    # a stopped sweep: the DSPy cell's trial is RUNNING with one heartbeat, then its process is gone
    executors.enqueue(job, [DSPY])
    study = optuna.load_study(study_name="ledger", storage=executors.ledger_storage(job.ledger))
    dead = study.ask()
    study._storage.record_heartbeat(dead._trial_id)
    executors.enqueue(job, [PROGOPT])
    time.sleep(1.5)  # past the grace period

    _run_all(job, [DSPY, PROGOPT])
    assert ran == ["ZeroShot", "progopt"]


def test_an_interrupted_cell_resumes_before_the_cells_queued_ahead_of_it_start(tmp_path, monkeypatch):
    job = _job(tmp_path, monkeypatch)
    ran = _fake_cells(job, monkeypatch)
    executors.enqueue(job, [DSPY, FEW_SHOT])
    _started_before(job, MIPRO)
    executors.enqueue(job, [MIPRO])  # a retry goes last
    _run_all(job, [DSPY, FEW_SHOT, MIPRO])
    assert ran == ["MIPROv2", "ZeroShot", "LabeledFewShot"]  # and the fresh ones keep their order


def test_a_fresh_cell_does_not_give_way_to_an_interrupted_one_that_waits_for_it(tmp_path, monkeypatch):
    job = _job(tmp_path, monkeypatch)
    ran = _fake_cells(job, monkeypatch)
    executors.enqueue(job, [DSPY])
    _started_before(job, PROGOPT)
    executors.enqueue(job, [PROGOPT])  # it waits for DSPY's budget: the two must not trade places forever
    _run_all(job, [DSPY, PROGOPT])
    assert ran == ["ZeroShot", "progopt"]
