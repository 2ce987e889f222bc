"""Run lifecycle without models: store selection, resume under the same parent, killed and failed runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from optimizer.records import TrialRecord
from optimizer.secrets import SecretDetector
from optimizer.space.variant import StepChoice, StepConfig, Variant
from optimizer.tracking import MlflowTracker, resolve_tracking_uri
from optimizer.tracking.tracker import PARENT

MODEL = "local/smollm2-135m"
SUMMARY = {"examples": 4, "score": 0.75, "score_ci": [0.25, 1.0], "validity_rate": 1.0, "cost_per_example": 2e-6,
           "latency_p50_s": 0.1, "latency_p95_s": 0.2, "lm_calls": 4, "cached_calls": 1, "input_tokens": 400,
           "output_tokens": 20, "truncations": 0, "by_model": {}, "by_step": {}}


def record(demos: str = "zero", stage: str = "minibatch") -> TrialRecord:
    variant = Variant(steps={"classify": StepChoice(instruction="original", demos=demos, model=MODEL)})
    steps = {"classify": StepConfig(instruction="Classify the sentiment.", model=MODEL)}
    return TrialRecord(number=0, variant_key=variant.key(), variant=variant, steps=steps, stage=stage,  # type: ignore[arg-type]
                       examples=4, summary=SUMMARY)


def start(tracker: MlflowTracker, study: str = "study-a", calls: int = 10) -> str:
    return tracker.start(study_name=study, program="programs/sentiment.py:Sentiment", seed=0,
                         budget={"calls": calls, "cost": None, "seconds": None}, datasets={"val": "abc"})


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return resolve_tracking_uri()


def test_default_store_is_sqlite_file_in_working_directory_and_env_overrides(tmp_path, store, monkeypatch):
    assert store == f"sqlite:///{tmp_path / 'mlflow.db'}"
    start(MlflowTracker())
    assert (tmp_path / "mlflow.db").is_file()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert resolve_tracking_uri() == "http://127.0.0.1:5999"
    assert resolve_tracking_uri("sqlite:///x.db") == "sqlite:///x.db"


def test_resume_reopens_parent_and_kills_children_a_dead_process_left_running(store):
    first = MlflowTracker(store)
    parent = start(first)
    first.log_trial(record())
    client = MlflowClient(store)
    # What a SIGKILL leaves: the parent RUNNING and a child created but never terminated.
    leftover = client.create_run(first.experiment_id, tags={PARENT: parent}).info.run_id

    second = MlflowTracker(store)
    assert start(second, calls=20) == parent
    runs = {r.info.run_id: r for r in second.children()}
    assert runs[leftover].info.status == "KILLED"
    assert [r.info.status for i, r in runs.items() if i != leftover] == ["FINISHED"]
    reopened = client.get_run(parent)
    assert reopened.info.status == "RUNNING"
    assert reopened.data.tags["progopt.sessions"] == "2"
    assert reopened.data.params["budget.calls"] == "10"  # params are immutable: the change is a tag
    assert reopened.data.tags["progopt.resumed.budget.calls"] == "20"
    assert start(MlflowTracker(store), study="study-b") != parent


def test_fail_ends_parent_failed_and_keyboard_interrupt_killed(store):
    tracker = MlflowTracker(store)
    parent = start(tracker)
    tracker.log_trial(record())
    open_child = MlflowClient(store).create_run(tracker.experiment_id, tags={PARENT: parent}).info.run_id
    tracker.fail(RuntimeError("the engine crashed"))
    client = MlflowClient(store)
    assert client.get_run(parent).info.status == "FAILED"
    assert client.get_run(parent).data.tags["progopt.error"] == "RuntimeError: the engine crashed"
    assert client.get_run(open_child).info.status == "FAILED"

    again = MlflowTracker(store)
    assert start(again) == parent
    again.fail(KeyboardInterrupt())
    assert client.get_run(parent).info.status == "KILLED"
    assert {r.info.status for r in again.children()} == {"FINISHED", "FAILED"}


def test_child_params_metrics_and_variant_json_come_from_the_record(store, tmp_path):
    tracker = MlflowTracker(store)
    start(tracker)
    rec = record(demos="labeled2", stage="full")
    tracker.log_trial(rec)
    (child,) = tracker.children()
    assert {k: child.data.params[k] for k in rec.variant.params()} == rec.variant.params()
    assert child.data.params["variant_key"] == rec.variant_key
    assert child.data.tags["progopt.stage"] == "full"
    assert child.data.metrics["quality_full"] == 0.75
    assert child.data.metrics["quality_full_ci_low"] == 0.25
    assert child.data.metrics["tokens"] == 420
    path = MlflowClient(store).download_artifacts(child.info.run_id, "variant.json", str(tmp_path))
    assert '"instruction": "Classify the sentiment."' in Path(path).read_text()


def test_detector_masks_env_values_key_shapes_and_secret_named_keys():
    s = SecretDetector({"OPENAI_API_KEY": "sk-sentinel-0123456789abcdef", "SERVICE_TOKEN": "tok-sentinel-42424242",
                  "HOME_KEYBOARD": "short"})
    assert s.mask("key sk-sentinel-0123456789abcdef and tok-sentinel-42424242") == "key *** and ***"
    assert s.mask("ghp_" + "a" * 36) == "***"
    assert s.mask('{"api_key": "hunter2", "max_tokens": 256}') == '{"api_key": "***", "max_tokens": 256}'
    assert s.mask("Authorization: Bearer abcdefghijklmnop") == "Authorization: ***"
    assert s.mask("short variant_key=abc123") == "short variant_key=abc123"
    assert s.mask_value({"password": "p", "nested": [{"token": 1}], "input_tokens": 3}) == {
        "password": "***", "nested": [{"token": "***"}], "input_tokens": 3}



def test_best_full_keeps_each_variants_best_full_record_not_its_latest():
    from optimizer.records import CompileResult

    def full(score: float, number: int) -> TrialRecord:
        base = record(stage="full")
        return base.model_copy(update={"number": number, "summary": base.summary.model_copy(update={"score": score})})

    result = CompileResult.model_construct(trials=[full(0.9, 1), full(0.5, 2)])
    assert [r.summary.score for r in result.best_full().values()] == [0.9]
