"""Throwaway loopback servers for tests: a free port, and waiting until a started server answers."""

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(proc: subprocess.Popen, probe: Callable[[], object], name: str, timeout_s: float = 120,
                     log: Path | None = None) -> None:
    """Call ``probe`` until it stops raising; fail the test (killing ``proc``) if it exits or times out,
    quoting the end of the server's ``log`` when there is one."""
    tail = lambda: f":\n{log.read_text()[-3000:]}" if log else ""  # noqa: E731
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            probe()
            return
        except Exception:  # noqa: BLE001 - not accepting connections yet
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode} before it answered{tail()}")
            time.sleep(0.3)
    proc.kill()
    pytest.fail(f"{name} did not answer within {timeout_s:.0f} s{tail()}")
