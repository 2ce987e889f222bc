"""DSPy cells on the real local model: each predictor of a two-step program runs in its own llama.cpp
instance, and a cell interrupted midway replays the calls it paid for from its journal (on a fresh response
cache, as on a fresh clone of its committed folder) and counts the time of both runs."""

from __future__ import annotations

import dataclasses
import json

import pytest

from optimizer import runtime
from optimizer.models import local
from optimizer.models.engine import LlamaEngine
from optimizer.sweep import cell as cell_module
from optimizer.sweep.clock import CLOCK_FILE, CompileClock
from optimizer.sweep.config import CellSettings

pytestmark = pytest.mark.slow
SETTINGS = {"program": {"ref": "programs/trec.py:QuestionClassifier"}, "optimizer": "BootstrapFewShot",
            "optimizer_args": {"max_bootstrapped_demos": 1, "max_labeled_demos": 1},
            "models": ["local/smollm2-135m"], "train_limit": 4, "val_limit": 2, "test_limit": 2, "seed": 0}


def test_an_interrupted_dspy_cell_replays_its_journal_on_a_fresh_cache_and_counts_both_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("PROGOPT_THREADS", "1")
    runtime.configure(tmp_path / "cache")
    settings, folder = CellSettings.model_validate(SETTINGS), tmp_path / "cell"
    paid: list[int] = []  # calls that reached the model in the current run (the cell's engine meter)
    monkeypatch.setattr(cell_module._Refresh, "counted", lambda self, meter: paid.append(meter.calls))
    slots: set[str | None] = set()
    load = local.load
    monkeypatch.setattr(local, "load", lambda spec, slot=None: slots.add(slot) or load(spec, slot))
    every_s0 = CompileClock.__init__
    monkeypatch.setattr(CompileClock, "__init__", lambda self, prior, save, every_s=2.0: every_s0(self, prior, save, 0))
    real_task, scored = cell_module.cell_task, []

    def interrupting_metric(task):
        def metric(example, prediction, trace=None):
            scored.append(1)
            if len(scored) == 2:  # the second bootstrapped example: as if the process were killed here
                raise KeyboardInterrupt
            return task.metric(example, prediction, trace)
        return metric

    monkeypatch.setattr(cell_module, "cell_task", lambda s: dataclasses.replace(
        real_task(s), metric=interrupting_metric(real_task(s))))
    with pytest.raises(KeyboardInterrupt):
        cell_module.run_cell(settings, folder, tracking_uri="none")
    first_paid, first_clock = paid[-1], json.loads((folder / CLOCK_FILE).read_text())
    assert first_paid == 4  # 2 training examples x 2 steps
    assert slots == {"dspy:coarse", "dspy:fine"}  # each step its own instance and KV prefix
    assert first_clock["cache"] == cell_module.JOURNAL and first_clock["seconds"] > 0
    assert len((folder / cell_module.JOURNAL).read_text().splitlines()) == first_paid

    monkeypatch.setattr(cell_module, "cell_task", real_task)
    runtime.configure(tmp_path / "fresh-cache")  # the first run's response cache is gone, as on a fresh clone
    generated: list[int] = []
    generate = LlamaEngine.generate
    monkeypatch.setattr(LlamaEngine, "generate", lambda self, request: generated.append(1) or generate(self, request))
    outcome = cell_module.run_cell(settings, folder, tracking_uri="none")
    assert outcome.state == "done", outcome.error
    test_calls = outcome.test["lm_calls"]
    # the first run's calls came from the journal; every other compile call and the test calls reached the model
    assert len(generated) == outcome.compile_calls - first_paid + test_calls
    assert outcome.compile_calls > first_paid and outcome.compile_seconds > first_clock["seconds"]
    assert not (folder / cell_module.JOURNAL).exists()  # a finished cell keeps its outcome, not its journal
    assert len((folder / cell_module.RUNS).read_text().splitlines()) == 2

