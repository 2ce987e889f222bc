"""Kill a real compile process midway (SIGKILL) and resume it: with the same storage, or on a fresh clone that
has only the call journal a sweep cell commits."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from optimizer.records import CompileResult
from tests.fixtures.peek import has_study

pytestmark = pytest.mark.slow  # runs the local models

BUDGET = 90
ROOT = Path(__file__).resolve().parent.parent


def _start(tmp: Path, *journal: str) -> subprocess.Popen:
    args = [f"sqlite:///{tmp / 'study.db'}", str(tmp / "cache"), str(tmp / "calls.log"), str(tmp / "result.json"),
            str(BUDGET), *journal]
    return subprocess.Popen([sys.executable, "-m", "tests.fixtures.resume_case", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _complete(storage: str) -> dict[int, tuple]:
    study = optuna.load_study(study_name="resume-case", storage=storage)
    return {t.number: (t.params, t.values, t.datetime_complete)
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}


def _paid(tmp: Path) -> list[str]:
    log = tmp / "calls.log"
    return log.read_text().split() if log.exists() else []


def _kill_after_two_trials(tmp: Path, *journal: str) -> dict[int, tuple]:
    """SIGKILL the compile as soon as two trials are complete (about 56 of the 90 calls paid), so that both
    finished trials and unpaid calls are left for the resumed run. Four trials took 88 calls, and a 1 s poll
    let a CI machine spend the whole budget before the kill."""
    storage = f"sqlite:///{tmp / 'study.db'}"
    proc = _start(tmp, *journal)
    deadline, reached = time.time() + 900, False  # generous: a loaded machine runs the models slowly
    while not reached and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        reached = has_study(tmp / "study.db", "resume-case") and len(_complete(storage)) >= 2
    assert proc.poll() is None, "the compile finished before it could be killed: raise BUDGET"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert reached, "the compile did not finish two trials in 15 minutes"
    assert len(_paid(tmp)) < BUDGET, "the kill came after the whole budget was paid: raise BUDGET"
    return _complete(storage)


def test_sigkilled_compile_resumes_without_rerunning_trials_or_repaying_calls(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    before = _kill_after_two_trials(tmp_path)
    assert len(before) >= 2 and _paid(tmp_path)

    resumed = _start(tmp_path)
    _, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, err.decode()[-2000:]

    after = _complete(storage)
    for number, done in before.items():  # finished trials are kept as they were, not re-run
        assert after[number] == done
    study = optuna.load_study(study_name="resume-case", storage=storage)
    assert sum(1 for t in study.trials if t.state == TrialState.COMPLETE
               and t.user_attrs.get("label", "").startswith("baseline")) == 2
    paid = (tmp_path / "calls.log").read_text().split()
    assert len(paid) == len(set(paid)), "an LM call was paid twice"
    result = CompileResult.model_validate_json((tmp_path / "result.json").read_text())
    assert result.spent["calls"] == BUDGET and len(paid) <= BUDGET
    assert result.chosen in {t.variant_key for t in result.trials}


def test_on_a_fresh_clone_with_only_the_call_journal_the_compile_replays_its_trials_and_pays_the_rest(tmp_path):
    """What a committed unfinished sweep cell relies on: no study, no response cache, only ``calls.jsonl``."""
    journal = str(tmp_path / "calls.jsonl")
    before = _kill_after_two_trials(tmp_path, journal)
    paid_before = _paid(tmp_path)
    shutil.rmtree(tmp_path / "cache")
    (tmp_path / "study.db").unlink()

    rerun = _start(tmp_path, journal)
    _, err = rerun.communicate(timeout=900)
    assert rerun.returncode == 0, err.decode()[-2000:]

    after = _complete(f"sqlite:///{tmp_path / 'study.db'}")
    for number, (params, values, _) in before.items():  # the same trials again, scored on the replayed outputs
        assert after[number][:2] == (params, values)
    paid = (tmp_path / "calls.log").read_text().split()
    assert len(paid) > len(paid_before) and len(paid) == len(set(paid)), "a journaled call was paid again"
    result = CompileResult.model_validate_json((tmp_path / "result.json").read_text())
    assert result.spent["calls"] == BUDGET and len(paid) <= BUDGET
