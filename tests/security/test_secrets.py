"""No secret reaches an artifact, MLflow, a report, a log or stderr: a corpus of 75+ key shapes (provider keys,
bearer/basic/token headers, JWTs, DSNs, URL user info and query tokens, base64, hex keys in prose, OAuth and
presigned-URL query parameters, command-line flags, odd key names) and odd env names."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from optimizer.artifact import ArtifactSecretError
from optimizer.cli import main
from optimizer.models import ModelSpec
from optimizer.records import CompileResult, TrialRecord
from optimizer.results import markdown_report
from optimizer.secrets import MaskingFilter, SecretDetector
from optimizer.space import SearchSpace, StepChoice, StepSpace, Variant
from optimizer.tracking import MlflowTracker
from tests.fixtures.artifacts import SUMMARY, save_sentiment, sentiment_config
from tests.security.corpus import env_shapes, shapes

CORPUS = shapes()
ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "compiled-program.v1.json"


def test_the_corpus_has_at_least_seventy_five_shapes_and_every_one_is_masked_whole():
    assert len(CORPUS) >= 75 and len({text for _, text, _ in CORPUS}) == len(CORPUS)
    detector = SecretDetector()
    for label, text, secret in CORPUS:
        masked = detector.mask(text)
        assert secret not in masked, label
        assert "***" in masked, label


def test_env_values_are_masked_by_the_variable_name_alone():
    env = env_shapes()
    detector = SecretDetector(env)
    for name, value in env.items():
        assert detector.mask(f"before {value} after") == "before *** after", name


def test_a_random_base64_key_without_digits_is_masked_and_long_identifiers_are_not():
    detector = SecretDetector({})
    key = "GTIbfElWIScRqHvLzxNmAkYpDuJwOeTsBfgQhVrKcMaZ"  # a base64 key that happened to draw no digit
    assert detector.mask(f"x {key} y") == "x *** y"
    for text in ("ConfiguredPredictWithCalibratedLabelScoring", "test_a_random_base64_key_without_digits_is_masked"):
        assert detector.mask(text) == text


def test_ordinary_text_is_left_alone():
    detector = SecretDetector({})
    sha = "e8c914d9cd4adf76a9b1a4e4daabc1ba58832946c1febe6ed6b484e87651581d"
    for text in ("max_tokens=256 variant_key=ab12cd34ef56", "it proves quite compelling as an intense study .",
                 f"content_sha256 {sha}", f'{{"source_sha256": "{sha}"}}',
                 f"commit {sha[:40]}", f"the sha256 of the key file is {sha}", f"cache key {sha}",
                 f"progopt.variant_key: {sha[:12]}", "input_tokens_per_example: 12", '{"eos_token": "</s>"}',
                 "http://127.0.0.1:8080/v1", "What is the password of the Hindenburg ?", "local/gemma3-270m",
                 "progopt run --max-tokens 256 --cache-dir /tmp/c --input '{}'", "docker login --password-stdin",
                 "https://example.com/search?q=secret+key&page=2", "exit code=2"):
        assert detector.mask(text) == text, text


@pytest.mark.parametrize("name", ["api_key_v2", "passphrase", "openai_api_key_2", "secretKey", "apiKeyV2",
                                  "x-api-key", "private_key_pem", "db_password_old", "AUTH_TOKEN_OLD", "clientSecret",
                                  "X-Amz-Signature"])
def test_odd_secret_key_names_are_masked_whole_in_json_values(name):
    detector = SecretDetector({})
    assert detector.mask_value({name: "hunter2", "max_tokens": 256, "variant_key": "ab12", "key_name": "k"}) == {
        name: "***", "max_tokens": 256, "variant_key": "ab12", "key_name": "k"}


def test_the_committed_data_results_and_artifacts_hold_nothing_it_would_flag():
    """False positives would refuse real artifacts and garble MLflow records: none in the real data we ship."""
    detector = SecretDetector({})
    files = [*ROOT.glob("programs/data/*/*.jsonl"), *ROOT.glob("experiments/results/**/*.json"),
             *ROOT.glob("experiments/results/**/*.md"), *ROOT.glob("tests/fixtures/*.json"), *ROOT.glob("*.md")]
    assert len(files) > 20
    flagged = {str(f.relative_to(ROOT)): next(detector.find(f.read_text(encoding="utf-8")), None) for f in files}
    assert not {f: hit for f, hit in flagged.items() if hit}


@pytest.mark.parametrize(("label", "text", "secret"), CORPUS, ids=[c[0] for c in CORPUS])
def test_the_artifact_writer_refuses_every_shape_and_writes_nothing(tmp_path, label, text, secret):
    path = tmp_path / "a.json"
    with pytest.raises(ArtifactSecretError) as info:
        save_sentiment(path, n_demos=0, instruction=f"Classify the review. {text}")
    assert info.value.json_path == "steps.classify.signature.instructions"
    assert secret not in str(info.value) and not path.exists()


@pytest.mark.parametrize("field", ["name", "api_base", "gguf"])
@pytest.mark.parametrize("label", ["openai", "github_pat", "stripe_live", "jwt", "b64", "hf", "gitlab"])
def test_a_key_planted_in_a_model_config_is_refused(tmp_path, field, label):
    secret = next(s for name, _, s in CORPUS if name == label)
    value = {"name": f"openai/{secret}", "api_base": f"http://127.0.0.1:8080/{secret}",
             "gguf": f"/models/{secret}.gguf"}[field]
    base = ModelSpec(name="openai/gpt-4o-mini", provider="litellm", api_base="http://127.0.0.1:8080/v1")
    spec = ModelSpec.model_construct(**{**base.model_dump(), field: value})
    with pytest.raises(ArtifactSecretError) as info:
        save_sentiment(tmp_path / "a.json", spec=spec, n_demos=0)
    assert info.value.json_path.startswith("steps.classify.model") and secret not in str(info.value)
    assert not (tmp_path / "a.json").exists()


def test_no_shape_reaches_an_mlflow_param_tag_artifact_or_log(tmp_path, monkeypatch, caplog, capfd):
    env = env_shapes()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    planted = [secret for _, _, secret in CORPUS] + list(env.values())
    texts = [text for _, text, _ in CORPUS] + [f"value {v}" for v in env.values()]
    tracker = MlflowTracker(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="secrets",
                            tags={f"t{i}": text for i, text in enumerate(texts)})
    tracker.start(study_name="planted", program=" ".join(texts[:20]), seed=0, budget={"calls": 1},
                  datasets={"train": texts[20]})
    tracker._log_json(tracker.run_id, {"rows": texts, "api_key": "plain-config-value"}, "planted.json")
    tracker.fail(RuntimeError("AuthenticationError: " + " ".join(texts)))
    store = [p for p in tmp_path.rglob("*") if p.is_file()]
    outputs = capfd.readouterr()
    for secret in planted:
        assert not [p for p in store if secret.encode() in p.read_bytes()], secret
        assert secret not in caplog.text and secret not in outputs.out + outputs.err
    assert not [p for p in store if b"plain-config-value" in p.read_bytes()]


def test_no_shape_reaches_the_markdown_report():
    text = " ".join(t for _, t, _ in CORPUS)
    chosen = sentiment_config(0, instruction=f"Classify. {text}")
    space = SearchSpace(steps={"classify": StepSpace(instructions={"i0": chosen.instruction}, demo_sets={"d0": []})},
                        models=[chosen.model])
    variant = Variant(steps={"classify": StepChoice(instruction="i0", demos="d0", model=chosen.model)})
    record = TrialRecord(number=0, variant_key=variant.key(), variant=variant, steps={"classify": chosen},
                         stage="full", examples=50, summary=SUMMARY, label=text[:300])
    result = CompileResult(program="programs/sentiment.py:Sentiment", program_hash="0" * 64, seed=0, budget={},
                           spent={}, space=space, datasets={}, trials=[record], baselines=[], front=[variant.key()],
                           chosen=variant.key(), test=[], tracking_run_id=None)
    report = markdown_report(result)
    assert "Classify." in report
    for _, _, secret in CORPUS:
        assert secret not in report


def test_no_shape_reaches_a_log_through_the_masking_filter():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(MaskingFilter(SecretDetector({})))
    logger = logging.getLogger("tests.security.secrets")
    logger.addHandler(handler)
    try:
        for _, text, _ in CORPUS:
            logger.warning("calling the provider failed: %s", text)
            try:
                raise RuntimeError(f"AuthenticationError: {text}")
            except RuntimeError:
                logger.exception("compile failed")
    finally:
        logger.removeHandler(handler)
    logged = stream.getvalue()
    assert logged.count("calling the provider failed") == len(CORPUS)
    assert not [label for label, _, secret in CORPUS if secret in logged]


def test_no_shape_reaches_stderr(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    for label, text, secret in CORPUS:  # the CLI's error names the unknown input field: here, the planted text
        assert main(["run", str(FIXTURE), "--input", json.dumps({text: 1})]) == 2
        err = capsys.readouterr().err
        assert "unknown" in err and secret not in err, label
