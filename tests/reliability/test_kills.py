"""SIGKILL real compiles at random points (space build, trials, promotion, final selection, test report) and a
two-worker PostgreSQL compile, then resume each: no finished trial lost or repeated, no request paid twice, the budget
held, no trial left running, every baseline promoted once, MLflow runs closed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
from mlflow import MlflowClient
from optuna.trial import TrialState

from optimizer.records import CompileResult
from tests.fixtures.peek import has_study
from tests.reliability.conftest import size
from tests.reliability.kill_case import FINAL_SHARE, STUDY

ROOT = Path(__file__).resolve().parents[2]
BUDGET = 100
SEARCH_CALLS = int(BUDGET * (1 - FINAL_SHARE))  # then the final selection spends the rest
KILLS = size("PROGOPT_KILLS", 2)
SEED = size("PROGOPT_KILL_SEED", 0)


def _finished(storage: str, study: str) -> dict[int, tuple]:
    try:
        loaded = optuna.load_study(study_name=study, storage=storage)
    except KeyError:
        return {}
    return {t.number: (t.params, t.values, t.datetime_complete)
            for t in loaded.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}


def _spent(storage: str) -> float:
    """The calls the compile's study counted (the test report's calls are not the compile's)."""
    study = _study(storage)
    return 0.0 if study is None else sum(v["calls"] for k, v in study.user_attrs.items() if k.startswith("spent:"))


def _phase(storage: str, study: str, paid: int) -> str:
    """Where the compile was when it was killed, from what it had stored and the calls it had paid."""
    try:
        loaded = optuna.load_study(study_name=study, storage=storage)
    except KeyError:
        return "space build"
    if "space" not in loaded.user_attrs:
        return "space build"
    running = loaded.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if any("promoting" in t.user_attrs for t in running):
        return "promotion"
    if running:
        return "trial"
    if paid > _spent(storage) + 1:
        return "test report"
    return "final selection" if any(k.startswith("final:") for k in loaded.user_attrs) else "between trials"


def _kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout_s: float = 400) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()``; False if it finished first."""
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    return False


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _study(storage: str) -> optuna.Study | None:
    """The kill case's study once its file and study exist (read without creating either), else None."""
    if not has_study(Path(storage.removeprefix("sqlite:///")), STUDY):
        return None
    try:
        return optuna.load_study(study_name=STUDY, storage=storage)
    except KeyError:
        return None


def _promoting(storage: str) -> bool:
    study = _study(storage)
    return study is not None and any("promoting" in t.user_attrs
                                     for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def _final_stored(storage: str) -> bool:
    """The final selection has stored its first re-scored variant (the next one is being evaluated)."""
    study = _study(storage)
    return study is not None and any(k.startswith("final:") for k in study.user_attrs)


def _real_cycle(tmp: Path, target: int | str | None) -> str | None:
    """Kill the real compile once ``target`` calls completed (None: once a promotion is running; "final": once
    the final selection stored its first variant; "test": once the test report paid two calls beyond the
    compile's), resume it, check; the phase killed in (None: it finished first)."""
    storage, log = f"sqlite:///{tmp / 'study.db'}", tmp / "calls.log"
    args = [storage, str(tmp / "cache"), str(log), str(tmp / "result.json"), str(BUDGET),
            f"sqlite:///{tmp / 'mlflow.db'}"]
    cmd = [sys.executable, "-m", "tests.reliability.kill_case", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ready = {None: lambda: _promoting(storage), "final": lambda: _final_stored(storage),
             "test": lambda: _study(storage) is not None and len(_lines(log)) >= _spent(storage) + 2,
             }.get(target, lambda: len(_lines(log)) >= target)
    if not _kill_when(proc, ready):
        return None
    before, paid_before = _finished(storage, STUDY), _lines(log)
    phase = _phase(storage, STUDY, len(paid_before))
    resumed = subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]

    after = _finished(storage, STUDY)
    assert all(after[n] == done for n, done in before.items()), "a finished trial changed"
    paid = _lines(log)
    assert len(paid) == len(set(paid)), "a request was paid twice"
    result = CompileResult.model_validate_json((tmp / "result.json").read_text())
    assert result.spent["calls"] <= BUDGET
    assert len(result.finals()) == 2  # the final selection ran (or was resumed) to the end
    study = optuna.load_study(study_name=STUDY, storage=storage)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    baselines = [t for t in study.get_trials(states=(TrialState.COMPLETE,)) if t.user_attrs.get("label")]
    assert sorted(t.user_attrs["label"] for t in baselines) == sorted(f"baseline {m}" for m in result.space.models)
    assert len(result.baselines) == len(result.space.models)  # every baseline promoted, once
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs and all(r.info.status != "RUNNING" for r in runs)
    return phase


def test_sigkilled_real_compiles_resume_with_nothing_lost_or_paid_twice(tmp_path, record_counts):
    rng = random.Random(SEED)
    phases: list[str] = []
    for cycle in range(KILLS):
        (tmp_path / str(cycle)).mkdir()
        # kill points by phase, in turn: the space build, a trial, a promotion, the test report, the final
        # selection (after the search's share of the calls)
        target = [rng.randint(1, 10), rng.randint(14, SEARCH_CALLS - 2), None, "test", "final"][(cycle + SEED) % 5]
        phase = _real_cycle(tmp_path / str(cycle), target)
        if phase is not None:
            phases.append(phase)
    record_counts(kind="kills", where="real compile (SQLite, MLflow)", kills=len(phases),
                  phases={p: phases.count(p) for p in sorted(set(phases))})
    assert phases


def _worker_cycle(postgres: str, study_name: str, budget: int, target: int) -> bool:
    """Two replayed workers on one PostgreSQL study; SIGKILL one after ``target`` finished trials and start
    it again; check the study. False if the victim finished before it could be killed."""
    cmd = [sys.executable, "-m", "tests.fixtures.search_case", postgres, study_name, str(budget)]
    victim, other = (subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(2))
    killed = _kill_when(victim, lambda: len(_finished(postgres, study_name)) >= target)
    before = _finished(postgres, study_name)
    resumed = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    outs = [p.communicate(timeout=600) for p in (other, resumed)]
    assert [other.returncode, resumed.returncode] == [0, 0], outs
    if not killed:
        return False
    after = _finished(postgres, study_name)
    assert all(after[n] == done for n, done in before.items()), "a finished trial changed"
    study = optuna.load_study(study_name=study_name, storage=postgres)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    spent = sum(v["calls"] for k, v in study.user_attrs.items() if k.startswith("spent:"))
    assert spent <= budget + 2  # one call per other worker may pass unseen (README)
    labels = [t.user_attrs["label"] for t in study.get_trials(states=(TrialState.COMPLETE,))
              if t.user_attrs.get("label")]
    assert sorted(labels) == sorted(set(labels)) and len(labels) == 2  # each baseline once
    return True


def test_a_sigkilled_worker_of_a_two_worker_postgres_compile_resumes(postgres, record_counts):
    rng = random.Random(SEED + 1)
    kills = sum(_worker_cycle(postgres, f"workers-{SEED}-{cycle}", 150, rng.randint(1, 8)) for cycle in range(KILLS))
    record_counts(kind="kills", where="two-worker PostgreSQL compile", kills=kills)
    assert kills
