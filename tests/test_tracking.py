"""A real compile on the local models, tracked to a real `mlflow server` and to the default local store; the
chosen variant served by `mlflow models serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.entities import Run

from optimizer.records import CompileResult, TrialRecord
from optimizer.search.compile import Budget, SearchSettings, SpaceSettings, compile
from optimizer.tracking import MlflowTracker
from programs.sentiment import TASK, Sentiment, metric
from tests.servers import free_port, wait_until_ready

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
MLFLOW = str(BIN / "mlflow")
# The first request builds each step's output constraint (numba JIT): far over MLflow's 60 s on a busy machine.
SCORING_TIMEOUT_S = 600
PROGRAM_REF = f"{Path(__file__).parents[1] / 'programs' / 'sentiment.py'}:Sentiment"
REGISTERED = "progopt-sentiment-test"
CHILD_METRICS = ("cost_per_example", "latency_p50_s", "latency_p95_s", "tokens", "validity_rate", "lm_calls",
                 "cached_calls")
PARENT_ARTIFACTS = {"front.json", "front.csv", "front.png", "compile_result.json"}


class Recording(MlflowTracker):
    """The tracker, keeping every record it was given (to compare with what MLflow holds)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.records: list[TrialRecord] = []

    def log_trial(self, record: TrialRecord) -> None:
        self.records.append(record)
        super().log_trial(record)


def tiny_compile(tracker: MlflowTracker, storage: str | None = None) -> CompileResult:
    # trials bounds the search when its LM calls are response-cache hits (they do not count as calls)
    return compile(Sentiment(), trainset=TASK.load("train", limit=20), valset=TASK.load("val", limit=12),
                   testset=TASK.load("test", limit=6), metric=metric, search=SearchSettings(minibatch=6, final_top=0),
                   space=SpaceSettings(proposer=None, teacher=None, strategies=("direct",), demo_draws=1),
                   budget=Budget(calls=80, trials=6), storage=storage, study_name="tracking-test",
                   program_ref=PROGRAM_REF, observer=tracker, show_progress=False)


@contextmanager
def serve(args: list[str], probe: str, log: Path, env: dict[str, str] | None = None) -> Iterator[None]:
    """Run a server process (ended by its own handle) until the block exits, once ``probe`` answers."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        wait_until_ready(proc, lambda: urllib.request.urlopen(probe, timeout=5).close(),
                         f"{Path(args[0]).name} {args[1]}", 300, log)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    with serve([MLFLOW, "server", "--backend-store-uri", f"sqlite:///{root / 'store.db'}", "--artifacts-destination",
                str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
               f"{uri}/health", root / "server.log"):
        yield uri


@pytest.fixture(scope="module")
def on_server(server) -> tuple[Recording, CompileResult]:
    tracker = Recording(tracking_uri=server, experiment="tracking-test", registered_model_name=REGISTERED)
    return tracker, tiny_compile(tracker)


def check_runs(client: MlflowClient, tracker: Recording, result: CompileResult) -> list[Run]:
    """The parent/child structure, params, metrics, tags and artifacts a compile must leave."""
    parent = client.get_run(result.tracking_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["progopt.study_name"] == "tracking-test"
    assert parent.data.params["seed"] == "0" and parent.data.params["budget.calls"] == "80"
    assert {k: parent.data.params[f"dataset.{k}"] for k in result.datasets} == result.datasets
    assert parent.data.metrics["spent_calls"] == result.spent["calls"]  # 0 when all calls were cache hits
    assert parent.data.tags["progopt.choice"] == result.choice_note and result.choice_note.startswith("chosen ")
    assert parent.data.tags["progopt.space"] == result.space_note
    assert any(k.startswith("baseline.local/smollm2-135m.quality_") for k in parent.data.metrics)
    artifacts = PARENT_ARTIFACTS | ({"compiled.json"} if tracker.log_model else set())
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= artifacts

    children = tracker.children()
    assert len(children) == len(tracker.records) == len(result.trials) + len(result.test)
    assert all(c.info.status == "FINISHED" and c.data.tags["mlflow.parentRunId"] == parent.info.run_id
               for c in children)

    def identity(stage: str, key: str, number: object, params: dict[str, str]) -> tuple:
        return stage, key, str(number), tuple(sorted(params.items()))

    logged = Counter(identity(c.data.tags["progopt.stage"], c.data.params["variant_key"], c.data.params["trial_number"],
                              {k: v for k, v in c.data.params.items() if "." in k}) for c in children)
    given = Counter(identity(r.stage, r.variant_key, r.number, r.variant.params()) for r in tracker.records)
    assert logged == given
    assert {r.stage for r in tracker.records} >= {"minibatch", "full", "test"}
    for child in children:
        stage = child.data.tags["progopt.stage"]
        assert {f"quality_{stage}", f"quality_{stage}_ci_low", f"quality_{stage}_ci_high",
                *CHILD_METRICS} <= set(child.data.metrics)
        key = child.data.tags["progopt.variant_key"]
        assert child.data.tags["progopt.on_front"] == str(key in result.front).lower()
        assert child.data.tags["progopt.chosen"] == str(key == result.chosen).lower()
    return children


def test_compile_on_server_logs_parent_children_params_metrics_artifacts(server, on_server, tmp_path):
    tracker, result = on_server
    client = MlflowClient(server)
    children = check_runs(client, tracker, result)
    record = tracker.records[-1]
    child = next(c for c in children if c.data.tags["progopt.stage"] == record.stage
                 and c.data.params["variant_key"] == record.variant_key)
    assert child.data.metrics[f"quality_{record.stage}"] == pytest.approx(record.summary.score)
    assert child.data.metrics["lm_calls"] == record.summary.lm_calls
    variant = json.loads(Path(client.download_artifacts(child.info.run_id, "variant.json", str(tmp_path))).read_text())
    assert variant["steps"] == {k: v.model_dump(mode="json") for k, v in record.steps.items()}
    front = json.loads(Path(client.download_artifacts(result.tracking_run_id, "front.json", str(tmp_path))).read_text())
    assert [r["variant_key"] for r in front if r["on_front"]] == result.front
    versions = client.search_model_versions(f"name = '{REGISTERED}'")
    assert len(versions) == 1 and versions[0].run_id == result.tracking_run_id


def test_default_local_store_and_resume_continue_one_parent(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first = Recording(experiment="tracking-test", log_model=False)
    result = tiny_compile(first, storage)
    assert (tmp_path / "mlflow.db").is_file()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    check_runs(client, first, result)

    resumed = Recording(experiment="tracking-test", log_model=False)
    again = tiny_compile(resumed, storage)
    assert again.tracking_run_id == result.tracking_run_id
    assert client.get_run(result.tracking_run_id).data.tags["progopt.sessions"] == "2"
    assert len(resumed.children()) == len(first.records) + len(resumed.records)


def test_chosen_model_is_served_by_mlflow_models_serve(server, on_server, tmp_path):
    model_uri = f"models:/{REGISTERED}/1"
    port = free_port()
    rows = [{"sentence": r.sentence} for r in TASK.load("test", limit=3)]
    with serve([MLFLOW, "models", "serve", "-m", model_uri, "--env-manager", "local", "--host", "127.0.0.1",
                "-p", str(port), "-t", str(SCORING_TIMEOUT_S)], f"http://127.0.0.1:{port}/ping",
               tmp_path / "serve.log", env={"MLFLOW_TRACKING_URI": server, "PATH": f"{BIN}:{os.environ['PATH']}"}):
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                         data=json.dumps({"dataframe_records": rows}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=SCORING_TIMEOUT_S) as response:
            predictions = json.loads(response.read())["predictions"]
    assert len(predictions) == len(rows)
    assert all(set(p) == {"sentiment"} and p["sentiment"] in {"negative", "positive"} for p in predictions)


def test_logged_model_is_code_and_json_with_a_signature_and_no_pickle(server, on_server, tmp_path):
    tracker, _ = on_server
    assert tracker.model_info is not None
    logged = MlflowClient(server).get_logged_model(tracker.model_info.model_id)
    assert logged.source_run_id == tracker.run_id
    local = Path(download_artifacts(logged.artifact_location, dst_path=str(tmp_path), tracking_uri=server))
    files = [p for p in local.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in {".pkl", ".pickle"} or "cloudpickle" in p.name]
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    pyfunc = mlmodel["flavors"]["python_function"]
    assert pyfunc["loader_module"] == "mlflow.pyfunc.loaders.code_model" and "python_model" not in pyfunc
    assert (local / "model_code.py").is_file()
    assert json.loads(mlmodel["signature"]["inputs"]) == [{"type": "string", "name": "sentence", "required": True}]
    assert json.loads(mlmodel["signature"]["outputs"])[0]["name"] == "sentiment"
    assert any(p.name == "compiled.json" for p in files)
