"""Masking never hides a file path: an error naming an artifact keeps its path (not ``***.json``), in the CLI's
stderr, a log, an MLflow error tag and the detector itself; a path is masked only where it holds a secret."""

from __future__ import annotations

import io
import logging
import secrets
from pathlib import Path

import pytest

from optimizer.cli import main
from optimizer.secrets import MaskingFilter, SecretDetector
from optimizer.tracking import MlflowTracker
from tests.security.corpus import shapes

SHA = "e8c914d9cd4adf76a9b1a4e4daabc1ba58832946"
PATHS = [
    "/tmp/pytest-of-x/pytest-3/test_x0/a.json",
    "/tmp/pytest-of-root/pytest-12/test_the_artifact_writer_Refuses_Bearer0/a.json",
    "experiments/results/vs-dspy-2026-11-30/TREC-twostep-Seed1/compiled_program.json",
    "/work/main/experiments/results/sentiment-Gemma3-270m-Seed0/compiled.json",
    f"/root/.cache/huggingface/hub/models--HuggingFaceTB--SmolLM2-135M-Instruct-GGUF/snapshots/{SHA}/model-Q8_0.gguf",
    "/tmp/tmpAb3xYz9q/compiled.json",
    "./runs/Run-2024-05-01T10-00-00Z/CompiledProgramWithCalibratedScores.json",
    "~/progopt/SST2-gemma3-LabelScoring/Compiled_Program_v2.json",
    "programs/sentiment.py:Sentiment",
]
MESSAGES = [
    "progopt: not a v1 artifact, {p} at steps.classify.model",
    "FileNotFoundError: [Errno 2] No such file or directory: '{p}'",
    "ArtifactSecretError: {p} holds a secret; password: hunter2-hunter2 in {p}",
    "token_path={p} gguf: {p}",
    "cannot read {p}\n  File \"{p}\", line 3",
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("message", MESSAGES)
def test_a_path_in_a_message_is_never_masked(path, message):
    masked = SecretDetector({}).mask(message.format(p=path))
    assert masked.count(path) == message.count("{p}"), masked
    assert "hunter2-hunter2" not in masked


@pytest.mark.parametrize("folder", ["TREC-twostep-Seed1", "test_Refuses_Bearer0", "sentiment-Gemma3-270m-Seed0"])
def test_the_cli_error_naming_an_artifact_keeps_its_path(tmp_path, monkeypatch, capsys, folder):
    monkeypatch.chdir(tmp_path)
    relative = Path("experiments") / "results" / "vs-dspy-2026-11-30" / folder / "compiled_program.json"
    for path in (relative, tmp_path / relative):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}", encoding="utf-8")  # not an artifact: the error names the file
        assert main(["run", str(path), "--input", "{}"]) == 2
        err = capsys.readouterr().err
        assert str(path) in err and "***" not in err, err
        assert main(["run", str(path.with_name("missing.json")), "--input", "{}"]) == 2
        err = capsys.readouterr().err
        assert str(path.with_name("missing.json")) in err and "***" not in err, err


def test_a_logged_error_and_an_mlflow_error_tag_keep_the_path(tmp_path, monkeypatch):
    path = tmp_path / "Run-Seed1-CalibratedScores" / "compiled_program.json"
    error = FileNotFoundError(2, "No such file or directory", str(path))
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(MaskingFilter(SecretDetector({})))
    logger = logging.getLogger("tests.security.paths")
    logger.addHandler(handler)
    try:
        logger.warning("could not save %s: %s", path, error)
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().count(str(path)) == 2
    monkeypatch.chdir(tmp_path)
    tracker = MlflowTracker(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="paths")
    tracker.start(study_name="paths", program=f"{path.parent / 'program.py'}:Program", seed=0, budget={}, datasets={})
    tracker.fail(error)
    run = tracker.client.get_run(tracker.run_id)
    assert str(path) in run.data.tags["progopt.error"]
    assert run.data.params["program"] == f"{path.parent / 'program.py'}:Program"


def test_a_path_is_masked_where_it_holds_a_secret():
    detector = SecretDetector({})
    corpus = {label: secret for label, _, secret in shapes()}
    key = "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(37))
    for secret in (corpus["github_pat"], corpus["openai"], corpus["aws_id"], corpus["jwt"], key + "aZ7"):
        for text in (f"/models/{secret}.gguf", f"/tmp/{secret}/a.json", f"progopt: bad, runs/{secret}/a.json at $"):
            masked = detector.mask(text)
            assert secret not in masked and "***" in masked, text
    assert detector.mask("https://user:hunter2@example.com/runs/a.json") == "https://***@example.com/runs/a.json"
    assert detector.mask("/tmp/x/a.json, password: hunter2") == "/tmp/x/a.json, password: ***"
