"""Sweeps on the real local models: resume after SIGKILL with no cell run twice or lost, two processes on
one PostgreSQL storage splitting the cells, and a real Ray cluster on 127.0.0.1 giving the local results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from optimizer.cli import main
from optimizer.sweep.cell import read_outcome
from optimizer.sweep.config import load_sweep
from optimizer.sweep.report import outcomes
from optimizer.sweep.run import run_sweep
from tests.servers import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PROGOPT = Path(sys.executable).with_name("progopt")
RAY = Path(sys.executable).with_name("ray")
SMALL = {"train_limit": 24, "val_limit": 6, "test_limit": 4, "minibatch": 3}


def _sweep(tmp_path: Path, name: str, matrix: dict, defaults: dict | None = None, include: list | None = None
           ) -> Path:
    path = tmp_path / f"{name}.yaml"
    doc = {"name": name, "output": str(tmp_path / name), "defaults": {**SMALL, **(defaults or {})}, "matrix": matrix,
           "include": include or []}
    path.write_text(json.dumps(doc), encoding="utf-8")  # JSON is YAML
    return path


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PROGOPT_THREADS": "1", "PROGOPT_CACHE_DIR": str(tmp_path / "cache"),
            "MLFLOW_DISABLE_TELEMETRY": "true"}


def _runs(folder: Path) -> list[dict]:
    path = folder / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_sweep_killed_midway_resumes_with_no_cell_run_twice_or_lost(tmp_path):
    path = _sweep(tmp_path, "killed", {"program": [{"ref": "programs/sentiment.py:Sentiment"}],
                                       "optimizer": ["LabeledFewShot", "progopt"], "seed": [0, 1]},
                  {"budget": 60})  # the space build (bootstrapping, proposals) spends about 30
    _, cells = load_sweep(path)
    folders = [tmp_path / "killed" / "cells" / c.cell_id() for c in cells]
    cmd = [str(PROGOPT), "sweep", str(path), "--tracking-uri", "none", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:  # kill once a cell finished and another is under way
        finished = [f for f in folders if (f / "outcome.json").exists()]
        if finished and any((f / "status.json").exists() and f not in finished for f in folders):
            break
        time.sleep(0.5)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {f: (f / "outcome.json").read_bytes() for f in folders if (f / "outcome.json").exists()}
    assert 0 < len(before) < len(folders)
    resumable = {f for f, c in zip(folders, cells, strict=True)  # a DSPy cell without a journal starts over
                 if c.optimizer == "progopt" or (f / "calls.jsonl").exists()}
    clocks = {f: json.loads((f / "clock.json").read_text()) for f in resumable  # its compile's time so far
              if f not in before and (f / "clock.json").exists()}

    rerun = subprocess.run(cmd, cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    for folder in folders:  # none lost; the finished ones untouched and started once
        assert (folder / "outcome.json").exists()
        if folder in before:
            assert (folder / "outcome.json").read_bytes() == before[folder] and len(_runs(folder)) == 1
        else:
            assert 1 <= len(_runs(folder)) <= 2  # the interrupted cell resumed (its study kept its trials)
        if folder in clocks:  # and its compile time counts the killed run's
            assert read_outcome(folder).compile_seconds > clocks[folder]["seconds"]
    assert all(o.state == "done" for o in outcomes(tmp_path / "killed"))
    for outcome in outcomes(tmp_path / "killed"):  # time inside LM calls is measured, and is part of the compile
        if outcome.settings.optimizer == "progopt":
            assert 0 < outcome.compile_lm_seconds < outcome.compile_seconds
    assert (tmp_path / "killed" / "report.md").exists() and (tmp_path / "killed" / "report.png").exists()
    (tmp_path / "killed" / "report.md").unlink()
    assert main(["sweep", "report", str(tmp_path / "killed")]) == 0  # rebuilt from the stored cells
    table = (tmp_path / "killed" / "report.md").read_text()
    assert "progopt@60" in table and "LabeledFewShot[gemma3-270m]" in table


def test_two_processes_on_one_postgres_storage_split_the_cells(tmp_path, postgres):
    path = _sweep(tmp_path, "split", {"program": [{"ref": "programs/sentiment.py:Sentiment"}],
                                      "optimizer": ["LabeledFewShot"], "seed": [0, 1, 2, 3]}, {"test_limit": 8})
    cmd = [str(PROGOPT), "sweep", str(path), "--storage", postgres, "--tracking-uri", "none", "--quiet"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-2000:]
    folders = sorted((tmp_path / "split" / "cells").iterdir())
    runs = [_runs(f) for f in folders]
    assert len(folders) == 8 and all(len(r) == 1 for r in runs)  # every cell run exactly once
    assert {r[0]["pid"] for r in runs} == {p.pid for p in procs}  # by both processes


def test_a_ray_cluster_runs_the_cells_and_gives_the_local_results(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    port = free_port()
    env = _env(tmp_path)
    started = subprocess.run([str(RAY), "start", "--head", "--port", str(port), "--num-cpus", "2",
                              "--include-dashboard", "false", "--disable-usage-stats"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        matrix = {"program": [{"ref": "programs/sentiment.py:Sentiment"}], "optimizer": ["LabeledFewShot"],
                  "seed": [0]}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.chdir(ROOT)
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        local = run_sweep(_sweep(tmp_path, "local", matrix), tracking_uri=uri, show_progress=False)
        # on Ray, also a cell whose budget is its DSPy cells' calls: its task takes theirs as arguments, so it
        # starts after them (LabeledFewShot compiles with no call: a 1-call budget, refused while building)
        waiter = {"optimizer": "progopt", "budget_from": "dspy-max", "program": matrix["program"][0], "seed": 0}
        on_ray = run_sweep(_sweep(tmp_path, "ray", matrix, include=[waiter]), executor="ray",
                           address=f"127.0.0.1:{port}", tracking_uri=uri, show_progress=False)
    finally:
        subprocess.run([str(RAY), "stop", "--force"], env=env, capture_output=True, timeout=120)
    results = {name: {o.cell_id: (o.test["score"], o.test_scores) for o in outcomes(out)
                      if o.settings.optimizer != "progopt"}
               for name, out in (("local", local), ("ray", on_ray))}
    assert results["ray"] == results["local"] and len(results["ray"]) == 2
    finished = max((on_ray / "cells" / cell / "outcome.json").stat().st_mtime for cell in results["ray"])
    (progopt,) = [o for o in outcomes(on_ray) if o.settings.optimizer == "progopt"]
    assert _runs(on_ray / "cells" / progopt.cell_id)[0]["started"] >= finished and "budget" in progopt.error
    for folder in (on_ray / "cells").iterdir():
        assert [r["worker"] for r in _runs(folder)] == ["ray"] and _runs(folder)[0]["pid"] != os.getpid()
    client = MlflowClient(uri)
    sweeps = client.search_runs([client.get_experiment_by_name("progopt-sweeps").experiment_id],
                                "tags.`progopt.kind` = 'sweep'")
    assert {r.data.tags["progopt.sweep"] for r in sweeps} == {"local", "ray"}
    children = client.search_runs([sweeps[0].info.experiment_id], "tags.`progopt.cell_state` = 'done'")
    parents = {r.data.tags.get("mlflow.parentRunId") for r in children}
    assert len(children) == 4 and parents == {r.info.run_id for r in sweeps}
    assert all("cell.optimizer" in r.data.tags for r in children)


def test_local_workers_run_cells_in_separate_processes_with_split_threads(tmp_path, monkeypatch):
    matrix = {"program": [{"ref": "programs/sentiment.py:Sentiment"}], "optimizer": ["LabeledFewShot"], "seed": [0]}
    for key, value in _env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(ROOT)
    out = run_sweep(_sweep(tmp_path, "workers", matrix), workers=2, tracking_uri="none", show_progress=False)
    runs = [_runs(f) for f in (out / "cells").iterdir()]
    assert len(runs) == 2 and all(len(r) == 1 and r[0]["pid"] != os.getpid() for r in runs)
    assert all(int(r[0]["threads"]) * 2 <= max(os.cpu_count() or 1, 2) for r in runs)  # workers x threads <= cores
    assert all(o.state == "done" for o in outcomes(out))
