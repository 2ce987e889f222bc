"""``progopt sweep status DIR``: a cell left ``running`` by a killed process reads ``stale``; live, finished,
waiting-on-another-host and never-started cells read as they are."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from optimizer.cli import main
from optimizer.sweep.cell import CellOutcome, read_status, write_json
from optimizer.sweep.config import CELLS_FILE, CellSettings


def _cell(optimizer: str, models: list[str]) -> CellSettings:
    return CellSettings.model_validate({"program": {"ref": "programs/sentiment.py:Sentiment"},
                                        "optimizer": optimizer, "models": models})


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _write_status(folder, pid: int, host: str | None = None, state: str = "running") -> None:
    status = {"state": state, "started": 100.0, "calls": 7, "pid": pid, "updated": 160.0}
    if host is not None:
        status["host"] = host
    folder.mkdir(parents=True)
    write_json(folder / "status.json", status)


def test_only_a_cell_whose_process_is_gone_from_this_host_reads_stale(tmp_path):
    here = socket.gethostname()
    _write_status(tmp_path / "dead", _dead_pid(), here)
    _write_status(tmp_path / "old-file", _dead_pid())  # written before the host was recorded: this host's
    _write_status(tmp_path / "live", os.getpid(), here, state="waiting")
    _write_status(tmp_path / "elsewhere", _dead_pid(), "another-host")
    assert read_status(tmp_path / "dead")["state"] == "stale"
    assert read_status(tmp_path / "old-file")["state"] == "stale"
    assert read_status(tmp_path / "live")["state"] == "waiting"
    assert read_status(tmp_path / "elsewhere")["state"] == "running"
    assert read_status(tmp_path / "never-started") == {}


def test_the_status_command_lists_every_selected_cell_with_its_state(tmp_path, capsys):
    done, killed, pending = _cell("ZeroShot", ["local/smollm2-135m"]), _cell("GEPA", ["local/smollm2-135m"]), \
        _cell("GEPA", ["local/gemma3-270m"])
    write_json(tmp_path / CELLS_FILE, [c.model_dump(mode="json") for c in (done, killed, pending)])
    cells = tmp_path / "cells"
    (cells / done.cell_id()).mkdir(parents=True)
    outcome = CellOutcome(cell_id=done.cell_id(), group="g", label="ZeroShot", settings=done, state="done",
                          test={"score": 0.625}, compile_calls=0)
    write_json(cells / done.cell_id() / "outcome.json", outcome.model_dump(mode="json"))
    _write_status(cells / killed.cell_id(), _dead_pid(), socket.gethostname())

    assert main(["sweep", "status", str(tmp_path)]) == 0
    rows = {line.split("│")[1].strip(): line for line in capsys.readouterr().out.splitlines() if "│" in line}
    assert "done" in rows[done.cell_id()] and "0.625" in rows[done.cell_id()]
    assert "stale" in rows[killed.cell_id()] and "60" in rows[killed.cell_id()]  # its clock stopped at 160 - 100
    assert "pending" in rows[pending.cell_id()]

    assert main(["sweep", "status", str(tmp_path), "--only", "models=local/gemma3-270m"]) == 0
    out = capsys.readouterr().out
    assert pending.cell_id() in out and done.cell_id() not in out


def test_a_folder_that_is_not_a_sweep_is_named(tmp_path, capsys):
    assert main(["sweep", "status", str(tmp_path)]) != 0
    assert str(tmp_path) in capsys.readouterr().err
    (tmp_path / "cells").mkdir()
    assert main(["sweep", "status", str(tmp_path)]) != 0
    assert CELLS_FILE in capsys.readouterr().err


def test_a_sweep_whose_selected_cell_failed_exits_1_and_names_it(tmp_path, capsys):
    from optimizer.commands.sweep import _failed
    from optimizer.sweep.cell import CellOutcome, write_json
    from optimizer.sweep.config import load_sweep

    path = tmp_path / "s.yaml"
    path.write_text("name: s\noutput: out\nmatrix:\n  program: [{ref: programs/sentiment.py:Sentiment}]\n"
                    "  optimizer: [ZeroShot]\n", encoding="utf-8")
    _, cells = load_sweep(path)
    output = tmp_path / "out"
    for i, settings in enumerate(cells):
        outcome = CellOutcome(cell_id=settings.cell_id(), group=settings.group(), label=settings.label(),
                              settings=settings, state="failed" if i == 0 else "done",
                              error="ValueError: no data here" if i == 0 else None)
        write_json(output / "cells" / settings.cell_id() / "outcome.json", outcome.model_dump(mode="json"))
    assert _failed(str(path), [], output) == 1
    assert f"cell {cells[0].cell_id()} ({cells[0].label()}) failed: ValueError: no data here" in capsys.readouterr().err
    assert _failed(str(path), [f"models={cells[1].models[0]}"], output) == 0  # the failed cell is not selected
