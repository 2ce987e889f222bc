"""Optuna storage on a real PostgreSQL server (loopback, throwaway data dir): a compile runs on it, a
second run with the same storage continues the same study, and concurrent workers share one budget."""

import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tests.fixtures.search_case import replay_pool, run

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.skipif(shutil.which("initdb") is None, reason="PostgreSQL server binaries not installed"),
              pytest.mark.slow]  # starts a PostgreSQL server


def test_compile_runs_on_postgres_and_a_second_run_continues_the_study(postgres):
    first = run(replay_pool(), "tpe", trials=6, storage=postgres)
    second = run(replay_pool(), "tpe", trials=10, storage=postgres)
    study = optuna.load_study(study_name=optuna.get_all_study_names(postgres)[0], storage=postgres)
    assert len(study.trials) == 10
    assert {t.variant_key for t in first.trials} <= {t.variant_key for t in second.trials}
    assert second.space == first.space


def test_concurrent_workers_share_one_call_budget(postgres):
    """Two worker processes on one study spend the study's budget together, not one budget each."""
    budget = 150
    cmd = [sys.executable, "-m", "tests.fixtures.search_case", postgres, "workers", str(budget)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(2)]
    counted = [int(p.communicate(timeout=600)[0].split()[-1]) for p in procs]  # each engine-side count
    assert [p.returncode for p in procs] == [0, 0]
    assert all(c > 0 for c in counted)  # both workers worked
    assert budget <= sum(counted) <= budget + 1  # at most one call over per additional worker
    stored = optuna.load_study(study_name="workers", storage=postgres).user_attrs
    assert sum(v["calls"] for k, v in stored.items() if k.startswith("spent:")) == sum(counted)
