"""Shared fixtures: the real embedded pool, a per-session DSPy cache (so tests really call models), and the
throwaway loopback servers (llama.cpp's OpenAI-compatible server, PostgreSQL), one per test module."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from optimizer import runtime
from optimizer.models import ModelPool
from tests.servers import free_port, wait_until_ready

_QUICK = "a test not marked slow runs a model: mark it `slow` (the quick loop, -m 'not slow', runs none)"
_running: dict[str, bool] = {"slow": True}  # whether the test being set up or run is marked slow


ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """The session (and every subprocess it starts) gets a trust file of its own that trusts this checkout, as
    the file of a user who compiled here would: the user's real ``~/.config/progopt`` is never read or written.
    Tests of what is trusted without it point ``PROGOPT_CONFIG_DIR`` elsewhere."""
    from optimizer.artifact.trust_file import CONFIG_DIR_ENV, remember_root

    config_dir = Path(tempfile.mkdtemp(prefix="progopt-config-"))
    os.environ[CONFIG_DIR_ENV] = str(config_dir)
    remember_root(ROOT, config_dir / "trust.toml")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _running["slow"] = item.get_closest_marker("slow") is not None
    if not _running["slow"] and "llama_server" in getattr(item, "fixturenames", ()):
        pytest.fail(_QUICK, pytrace=False)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    _running["slow"] = True  # between tests (session fixtures, teardown), loading is allowed


@pytest.fixture(scope="session", autouse=True)
def _no_model_in_quick_tests() -> Iterator[None]:
    """Fails a test not marked slow that loads a llama.cpp model or calls a LiteLLM model (module and
    session fixtures included: they run inside the setup of the test that first needs them)."""
    import llama_cpp

    from optimizer.models.spec import import_litellm

    litellm = import_litellm()  # with its bundled price map: no download from GitHub at import
    real_init, real_completion = llama_cpp.Llama.__init__, litellm.completion

    def guarded(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if not _running["slow"]:
                pytest.fail(_QUICK, pytrace=False)
            return real(*args, **kwargs)
        return call

    llama_cpp.Llama.__init__, litellm.completion = guarded(real_init), guarded(real_completion)
    yield
    llama_cpp.Llama.__init__, litellm.completion = real_init, real_completion


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    runtime.configure(tmp_path_factory.mktemp("dspy-cache"))


@pytest.fixture(scope="session")
def pool() -> ModelPool:
    return ModelPool.default()


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    """llama.cpp's OpenAI-compatible server on 127.0.0.1 serving SmolLM2 as ``smollm2``; its /v1 URL."""
    from optimizer.models.files import smollm2_gguf

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf()), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048", "--n_threads", "2", "--model_alias", "smollm2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    wait_until_ready(proc, lambda: urllib.request.urlopen(f"{url}/models", timeout=2), "llama_cpp.server")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 (run as ``nobody``: PostgreSQL refuses root); its URL."""
    import optuna

    if shutil.which("initdb") is None:
        pytest.skip("PostgreSQL server binaries not installed")
    nobody = ["runuser", "-u", "nobody", "--"]
    root = Path(tempfile.mkdtemp(prefix="progopt-pg-"))  # pytest's tmp dirs sit under a 0700 directory
    root.chmod(0o777)
    data, port = root / "data", free_port()
    subprocess.run([*nobody, "initdb", "-D", str(data), "-U", "progopt", "--auth=trust"], check=True,
                   capture_output=True)
    server = subprocess.Popen([*nobody, "postgres", "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
                               "-k", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"postgresql+psycopg://progopt@127.0.0.1:{port}/postgres"
    wait_until_ready(server, lambda: optuna.storages.RDBStorage(url), "PostgreSQL", timeout_s=30)
    yield url
    server.terminate()
    server.wait(timeout=30)
    shutil.rmtree(root, ignore_errors=True)
