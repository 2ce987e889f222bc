"""A progopt cell's budget counts the LM calls that reach a model, so it must not be served other cells'
responses from a shared cache: each progopt cell runs under its own response cache, DSPy cells under the
shared one."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import dspy

from optimizer import runtime
from optimizer.models import ModelPool
from optimizer.sweep import cell as cell_module
from optimizer.sweep.config import CellSettings, ProgramSettings

PROGRAM = ProgramSettings(ref="programs/sentiment.py:Sentiment")


def test_each_progopt_cell_compiles_under_its_own_cache_and_dspy_cells_share_one(tmp_path, monkeypatch):
    seen: list[tuple[str, Path | None]] = []

    def runner(settings, folder, *args, **kwargs):
        seen.append((settings.label(), runtime.configured_cache()))
        return {}

    monkeypatch.setattr(cell_module, "cell_task", lambda settings: SimpleNamespace(
        load=lambda split, limit: [], pool=ModelPool.default()))
    monkeypatch.setattr(cell_module, "_progopt", runner)
    monkeypatch.setattr(cell_module, "_dspy", runner)
    monkeypatch.setattr(dspy, "cache", dspy.cache)  # the process's cache comes back after the test
    shared = runtime.configure(tmp_path / "shared")
    cells = [CellSettings(program=PROGRAM, optimizer="progopt", budget=100),
             CellSettings(program=PROGRAM, optimizer="progopt", budget=50),
             CellSettings(program=PROGRAM, optimizer="MIPROv2")]
    for settings in cells:
        outcome = cell_module.run_cell(settings, tmp_path / "cells" / settings.cell_id(), tracking_uri="none")
        assert outcome.state == "done", outcome.error
        assert runtime.configured_cache() == shared  # restored after every cell
    own = [tmp_path / "cells" / c.cell_id() / cell_module.LM_CACHE for c in cells[:2]]
    assert [path for _, path in seen] == [*own, shared]
