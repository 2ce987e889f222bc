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


def test_a_dead_workers_cell_is_claimed_again_while_a_deferred_cell_waits_for_it(tmp_path, monkeypatch):
    monkeypatch.setattr(executors, "GRACE_S", 1)
    monkeypatch.setattr(executors, "HEARTBEAT_S", 1)
    monkeypatch.setattr(executors, "DEFER_WAIT_S", 0.1)
    monkeypatch.setattr(executors, "IDLE_WAIT_S", 0.1)
    job = executors.CellJob(output=tmp_path, project=tmp_path, storage=None, ledger=f"sqlite:///{tmp_path / 'l.db'}",
                            ledger_name="ledger", tracking_uri="none", parent_run_id=None, threads=1)
    cells = {c.cell_id(): c for c in (DSPY, PROGOPT)}
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
    # a stopped sweep: the DSPy cell's trial is RUNNING with one heartbeat, then its process is gone
    executors.enqueue(job, [DSPY])
    study = optuna.load_study(study_name="ledger", storage=executors.ledger_storage(job.ledger))
    dead = study.ask()
    study._storage.record_heartbeat(dead._trial_id)
    executors.enqueue(job, [PROGOPT])
    time.sleep(1.5)  # past the grace period

    worker = threading.Thread(target=executors.claim_and_run, args=(job, cells), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the stopped cell was never claimed again"
    assert ran == ["ZeroShot", "progopt"]
