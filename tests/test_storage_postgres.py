"""Optuna storage on a real PostgreSQL server (loopback, throwaway data dir): a compile runs on it and a
second run with the same storage continues the same study."""

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from tests.fixtures.search_case import replay_pool, run

pytestmark = pytest.mark.skipif(shutil.which("initdb") is None, reason="PostgreSQL server binaries not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_nobody(*cmd: str) -> list[str]:
    return ["runuser", "-u", "nobody", "--", *cmd]


@pytest.fixture(scope="module")
def postgres():
    # the server runs as `nobody` (PostgreSQL refuses root), so its directory must be reachable by it:
    # pytest's own tmp dirs sit under a 0700 directory
    root = Path(tempfile.mkdtemp(prefix="progopt-pg-"))
    root.chmod(0o777)
    data, port = root / "data", _free_port()
    subprocess.run(_as_nobody("initdb", "-D", str(data), "-U", "progopt", "--auth=trust"), check=True,
                   capture_output=True)
    server = subprocess.Popen(_as_nobody("postgres", "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
                                         "-k", str(root)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"postgresql+psycopg://progopt@127.0.0.1:{port}/postgres"
    for _ in range(100):
        try:
            optuna.storages.RDBStorage(url)
            break
        except Exception:  # noqa: BLE001 - not accepting connections yet
            time.sleep(0.2)
    else:
        server.kill()
        pytest.fail("PostgreSQL did not start")
    yield url
    server.terminate()
    server.wait(timeout=30)
    shutil.rmtree(root, ignore_errors=True)


def test_compile_runs_on_postgres_and_a_second_run_continues_the_study(postgres):
    first = run(replay_pool(), "tpe", trials=6, storage=postgres)
    second = run(replay_pool(), "tpe", trials=10, storage=postgres)
    study = optuna.load_study(study_name=optuna.get_all_study_names(postgres)[0], storage=postgres)
    assert len(study.trials) == 10
    assert {t.variant_key for t in first.trials} <= {t.variant_key for t in second.trials}
    assert second.space == first.space
