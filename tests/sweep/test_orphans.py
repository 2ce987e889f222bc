"""A sweep's worker processes exit when the sweep process is stopped (SIGTERM or SIGKILL) instead of
running on orphaned: before, ``kill <sweep pid>`` left both workers computing their cells."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, which a container's init may never reap, has exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_worker_exits_when_its_sweep_process_is_killed(tmp_path, sig):
    pid_file = tmp_path / "worker.pid"
    parent = subprocess.Popen([sys.executable, "-m", "tests.fixtures.orphan_case", str(pid_file)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 300  # a liveness bound: spawning imports dspy, slow on a loaded machine
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline and parent.poll() is None, "the worker never started"
            time.sleep(0.2)
        worker = int(pid_file.read_text())
        assert _alive(worker)
        os.kill(parent.pid, sig)
        parent.wait()
        deadline = time.monotonic() + 180  # a liveness bound, not a measured time: the watch polls every second
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(worker), "the worker ran on after its sweep process was killed"
    finally:
        parent.kill()
        if pid_file.exists() and pid_file.read_text() and _alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_a_worker_whose_sweep_process_died_before_it_started_exits_at_once():
    """The worker was handed to init before it could watch: its parent pid already differs."""
    code = ("import time; from optimizer.sweep.executors import exit_with_parent; "
            "exit_with_parent(0); time.sleep(300); print('ran on')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 1 and "ran on" not in done.stdout and "Traceback" not in done.stderr
