"""Keys go only where the user sends them: an artifact's ``api_base`` is used only if the user's configuration
allows it (loopback by default), and a ``gguf`` path only inside a directory the user allowed. ``validate``
lists every endpoint and file an artifact would use."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from optimizer.artifact import ArtifactTrustError, TrustPolicy, load_artifact
from optimizer.artifact.trust import ENDPOINTS_ENV, MODEL_DIRS_ENV
from optimizer.cli import main
from optimizer.models import ModelSpec
from tests.fixtures.artifacts import rewrite, save_sentiment

ROOT = Path(__file__).resolve().parents[2]


class _Stub(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that records every request and answers ``{"sentiment": "positive"}``."""

    seen: list[dict[str, str]]

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.server.seen.append({"path": self.path, "authorization": self.headers.get("Authorization", "")})  # type: ignore[attr-defined]
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "stub", "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
                                                              "content": '{"sentiment": "positive"}'}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def stub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def _api_artifact(tmp_path: Path, base: str) -> Path:
    spec = ModelSpec(name=f"openai/stub-{secrets.token_hex(4)}", provider="litellm", api_base=base)  # uncached
    return save_sentiment(tmp_path / "api.json", spec=spec, n_demos=0)


@pytest.mark.slow
def test_an_endpoint_the_user_did_not_allow_receives_nothing(tmp_path, monkeypatch, capsys, stub):
    monkeypatch.chdir(ROOT)
    key = f"sk-{secrets.token_hex(20)}"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    base = f"http://127.0.0.1:{stub.server_port}/v1"
    path = _api_artifact(tmp_path, base)

    monkeypatch.setenv(ENDPOINTS_ENV, "https://api.openai.com/v1")  # the user's list replaces the loopback default
    with pytest.raises(ArtifactTrustError) as info:
        load_artifact(path)
    assert info.value.json_path == "steps.classify.model.api_base" and base in str(info.value)
    assert main(["run", str(path), "--input", '{"sentence": "a film"}']) == 2
    assert "steps.classify.model.api_base" in capsys.readouterr().err
    assert stub.seen == []

    program = load_artifact(path, trust=TrustPolicy.from_env(endpoints=[base]))  # allowed explicitly: used
    assert program(sentence="a gorgeous film").sentiment == "positive"
    assert len(stub.seen) == 1 and stub.seen[0]["authorization"] == f"Bearer {key}"


def test_a_remote_endpoint_is_refused_by_default_and_loopback_is_allowed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv(ENDPOINTS_ENV, raising=False)
    remote = _api_artifact(tmp_path, "https://collector.example.com/v1")
    with pytest.raises(ArtifactTrustError, match="collector.example.com"):
        load_artifact(remote)
    assert load_artifact(remote, trust=TrustPolicy.from_env(endpoints=["https://collector.example.com"]))
    local = _api_artifact(tmp_path, "http://localhost:8080/v1")
    assert main(["validate", str(local)]) == 0
    assert "endpoint classify: http://localhost:8080/v1 (allowed)" in capsys.readouterr().out


def _with_gguf(tmp_path: Path, gguf: str) -> Path:
    saved = save_sentiment(tmp_path / "local.json", n_demos=0)
    return rewrite(saved, lambda doc: doc["steps"]["classify"]["model"].update(gguf=gguf))


@pytest.mark.parametrize("where", ["outside", "relative", "not gguf", "symlink out"])
def test_a_model_file_outside_the_allowed_directories_is_refused(tmp_path, monkeypatch, where):
    monkeypatch.chdir(ROOT)
    allowed, outside = tmp_path / "models", tmp_path / "elsewhere"
    allowed.mkdir()
    outside.mkdir()
    (outside / "m.gguf").write_bytes(b"GGUF")
    (allowed / "m.bin").write_bytes(b"GGUF")
    (allowed / "link.gguf").symlink_to(outside / "m.gguf")
    gguf = {"outside": str(outside / "m.gguf"), "relative": "models/m.gguf", "not gguf": str(allowed / "m.bin"),
            "symlink out": str(allowed / "link.gguf")}[where]
    monkeypatch.setenv(MODEL_DIRS_ENV, str(allowed))
    with pytest.raises(ArtifactTrustError) as info:
        load_artifact(_with_gguf(tmp_path, gguf))
    assert info.value.json_path == "steps.classify.model.gguf"


def test_a_model_file_inside_an_allowed_directory_is_used_and_listed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    allowed = tmp_path / "models"
    allowed.mkdir()
    (allowed / "m.gguf").write_bytes(b"GGUF")
    path = _with_gguf(tmp_path, str(allowed / "m.gguf"))
    monkeypatch.delenv(MODEL_DIRS_ENV, raising=False)
    with pytest.raises(ArtifactTrustError):
        load_artifact(path)
    assert main(["validate", str(path), "--allow-model-dir", str(allowed)]) == 0
    out = capsys.readouterr().out
    assert f"file     classify: {allowed / 'm.gguf'} (allowed)" in out
    assert f"code     programs/sentiment.py:Sentiment -> {ROOT / 'programs' / 'sentiment.py'} (trusted)" in out


@pytest.mark.slow
def test_running_an_api_artifact_reaches_only_its_allowed_endpoint(tmp_path, stub):
    """Importing LiteLLM downloads its price map from GitHub unless told not to; running an API artifact
    imports LiteLLM and must not make that request (any HTTPS request fails at a dead proxy, and LiteLLM
    logs the failed fetch)."""
    path = _api_artifact(tmp_path, f"http://127.0.0.1:{stub.server_port}/v1")
    env = {k: v for k, v in os.environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    env.update(HTTPS_PROXY="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9", PYTHONPATH=str(ROOT),
               OPENAI_API_KEY="sk-test")
    script = ("import sys; from optimizer.cli import main; code = main(['run', sys.argv[1], '--input', "
              "'{\"sentence\": \"a film\"}']); print('litellm imported:', 'litellm' in sys.modules); sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", script, str(path)], env=env, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "litellm imported: True" in proc.stdout and len(stub.seen) == 1
    assert "cost map" not in proc.stderr and "raw.githubusercontent.com" not in proc.stderr
