"""No secret reaches MLflow: keys planted in the environment, the data, a run tag, a model config and an
error message are found in no param, tag, metric, artifact or log of the store."""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path

import pytest
from mlflow import MlflowClient
from pydantic import ValidationError

from optimizer.models.spec import ModelSpec
from optimizer.search.compile import Budget, SearchSettings, SpaceSettings, compile
from optimizer.tracking import MlflowTracker
from programs.sentiment import TASK, Sentiment, metric

pytestmark = pytest.mark.slow

PROGRAM_REF = f"{Path(__file__).parents[1] / 'programs' / 'sentiment.py'}:Sentiment"


def test_planted_keys_reach_no_param_tag_artifact_or_log(tmp_path, monkeypatch, caplog, capfd):
    api_key = f"sk-sentinel-{secrets.token_hex(12)}"  # shaped like a key, and in a *_KEY variable
    token = f"tok-sentinel-{secrets.token_hex(12)}"  # only the variable name says it is secret
    config_key = f"cfg-sentinel-{secrets.token_hex(12)}"  # in no variable: only its config key says it
    monkeypatch.setenv("OPENAI_API_KEY", api_key)
    monkeypatch.setenv("PROGOPT_SERVICE_TOKEN", token)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    caplog.set_level(logging.DEBUG)

    # A model config cannot carry a key at all.
    with pytest.raises(ValidationError):
        ModelSpec(name="openai/gpt-4o-mini", provider="litellm", api_key=api_key)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        ModelSpec(name="openai/gpt-4o-mini", provider="litellm", api_base=f"https://u:{api_key}@api.example.com")

    # Keys pasted into the training data reach the demo sets, the space and every variant JSON.
    train = [ex.copy(sentence=f"{ex.sentence} ({api_key} {token})") for ex in TASK.load("train", limit=20)]
    tracker = MlflowTracker(experiment="secrets", tags={
        "model_config": json.dumps({"model": "openai/gpt-4o-mini", "api_key": config_key})})
    result = compile(Sentiment(), trainset=train, valset=TASK.load("val", limit=12), metric=metric,
                     search=SearchSettings(minibatch=6, final_top=0),
                     space=SpaceSettings(proposer=None, teacher=None, strategies=("direct",), demo_draws=1),
                     budget=Budget(calls=40, trials=4),
                     program_ref=PROGRAM_REF, observer=tracker, show_progress=False)
    # An error message echoing a key (as provider authentication errors do).
    failing = MlflowTracker(experiment="secrets")
    failing.start(study_name="failing", program=PROGRAM_REF, seed=0, budget={}, datasets={})
    failing.fail(RuntimeError(f"AuthenticationError: Incorrect API key provided: {api_key}; token={config_key}"))

    client = MlflowClient(tracker.tracking_uri)
    parent = client.get_run(result.tracking_run_id)
    assert json.loads(parent.data.tags["model_config"])["api_key"] == "***"
    assert "***" in client.get_run(failing.run_id).data.tags["progopt.error"]
    logged = Path(client.download_artifacts(parent.info.run_id, "compile_result.json", str(tmp_path / "dl")))
    assert "***" in logged.read_text()  # the planted rows were logged, masked
    assert "progopt.model" in parent.data.tags  # logged without the planted rows, or refused

    store = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert (tmp_path / "mlflow.db") in store and len(store) > 10
    outputs = capfd.readouterr()
    for sentinel in (api_key, token, config_key):
        leaks = [p for p in store if sentinel.encode() in p.read_bytes()]
        assert not leaks, f"{sentinel} found in {leaks}"
        assert sentinel not in caplog.text and sentinel not in outputs.out + outputs.err
