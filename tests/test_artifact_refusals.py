"""Every way an artifact is refused: a typed error naming the file and the JSON path of the bad field."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from optimizer.artifact import (
    ArtifactError,
    ArtifactFormatError,
    ArtifactIntegrityError,
    ArtifactProgramError,
    ArtifactSecretError,
    ArtifactTrustError,
    ArtifactVersionError,
    SignatureDriftError,
    TrustPolicy,
    load_artifact,
    read_artifact,
    save_artifact,
)
from optimizer.models import SMOLLM2, ModelSpec
from optimizer.space import StepConfig
from programs.sentiment import Sentiment
from programs.trec import QuestionClassifier
from tests.fixtures.artifacts import rewrite, save_sentiment, sentiment_config, write_program

API = ModelSpec(name="openai/gpt-4o-mini", provider="litellm", api_base="https://api.example.com/v1")


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return save_sentiment(tmp_path / "sentiment.json")


def refused(path: Path, error: type[ArtifactError], json_path: str, **load) -> ArtifactError:
    """Load ``path``, expect ``error`` at ``json_path``, and check the message names both."""
    with pytest.raises(error) as info:
        load_artifact(path, **load)
    exc = info.value
    assert exc.json_path == json_path and exc.path == str(path)
    assert str(path) in str(exc) and f": {json_path}: " in str(exc)
    return exc


@pytest.mark.parametrize(("where", "json_path"), [
    ((), "comment"), (("steps", "classify", "strategy"), "steps.classify.strategy.beam_width"),
    (("provenance", "packages"), "provenance.packages.torch"),
])
def test_unknown_keys_are_rejected_everywhere(saved, where, json_path):
    def add(doc):
        for key in where:
            doc = doc[key]
        doc[json_path.rsplit(".", 1)[-1]] = 1

    refused(rewrite(saved, add), ArtifactFormatError, json_path)


def test_wrong_type_and_missing_key_name_the_field(saved, tmp_path):
    def bad_name(doc):
        doc["steps"]["classify"]["model"]["name"] = 3

    refused(rewrite(saved, bad_name), ArtifactFormatError, "steps.classify.model.name")

    def drop_format(doc):
        del doc["steps"]["classify"]["format"]

    refused(rewrite(save_sentiment(tmp_path / "b.json"), drop_format), ArtifactFormatError, "steps.classify.format")


def test_tampered_content_fails_the_hash(saved):
    def tamper(doc):
        doc["steps"]["classify"]["demos"][0]["sentiment"] = "negative"

    exc = refused(rewrite(saved, tamper, rehash=False), ArtifactIntegrityError, "content_sha256")
    assert "modified after it was saved" in str(exc)


def test_unknown_major_version_is_refused_and_a_newer_minor_is_read(saved):
    def major(doc):
        doc["format_version"] = "2.0"

    refused(rewrite(saved, major), ArtifactVersionError, "format_version")

    def minor(doc):
        doc["format_version"] = "1.7"

    assert read_artifact(rewrite(saved, minor))["format_version"] == "1.7"


def test_truncated_file_is_not_json(saved):
    saved.write_bytes(saved.read_bytes()[: len(saved.read_bytes()) // 2])
    exc = refused(saved, ArtifactFormatError, "$")
    assert "line" in str(exc) and "truncated" in str(exc)


def test_duplicate_keys_are_refused_not_merged(saved):
    text = saved.read_text(encoding="utf-8")
    saved.write_text(text.replace('"format": "json"', '"format": "json", "format": "chat"'), encoding="utf-8")
    refused(saved, ArtifactFormatError, "steps.classify.format")


@pytest.mark.parametrize(("drift", "json_path"), [
    ({"field": "text"}, "steps.classify.signature.inputs.sentence"),
    ({"output_type": "bool"}, "steps.classify.signature.outputs.sentiment.type"),
    ({"output_type": 'Literal["neg", "pos"]'}, "steps.classify.signature.outputs.sentiment.type"),
    ({"step": "judge"}, "steps.classify"),
])
def test_signature_drift_is_refused(tmp_path, drift, json_path):
    saved = save_sentiment(tmp_path / "a.json", program_ref=write_program(tmp_path))
    drifted = write_program(tmp_path, "drifted", **drift)

    def point_at_drifted(doc):
        doc["program"]["ref"] = drifted

    drift = TrustPolicy.from_env(trust=[tmp_path], allow_source_drift=True)  # another file: another hash
    refused(rewrite(saved, point_at_drifted), SignatureDriftError, json_path, trust=drift)


@pytest.mark.parametrize(("ref", "error"), [
    ("no_such_module_xyz:Program", ArtifactTrustError), ("missing/program.py:Sentiment", ArtifactTrustError),
    ("json:JSONDecoder", ArtifactTrustError),  # the standard library is not a trusted distribution
    ("programs.sentiment:NoSuchClass", ArtifactProgramError),
])
def test_a_program_reference_that_does_not_resolve_is_refused(saved, ref, error):
    def point(doc):
        doc["program"]["ref"] = ref

    refused(rewrite(saved, point), error, "program.ref")


def test_a_changed_program_source_is_refused_unless_drift_is_allowed(tmp_path, caplog):
    ref = write_program(tmp_path)
    saved = save_sentiment(tmp_path / "a.json", program_ref=ref)
    path = Path(ref.partition(":")[0])
    path.write_text(path.read_text() + "\n# a comment\n")
    exc = refused(saved, ArtifactIntegrityError, "program.source_sha256", trust=TrustPolicy.from_env(trust=[tmp_path]))
    assert "--allow-source-drift" in str(exc)
    with caplog.at_level(logging.WARNING, logger="optimizer.artifact.load"):
        load_artifact(saved, trust=TrustPolicy.from_env(trust=[tmp_path], allow_source_drift=True))
    assert "program.source_sha256" in caplog.text and "changed since the artifact was saved" in caplog.text


def test_one_model_name_with_two_configurations_is_refused(tmp_path):
    config = StepConfig(instruction="Classify.", model=SMOLLM2.name)
    saved = save_artifact(tmp_path / "trec.json", program_ref="programs/trec.py:QuestionClassifier",
                          program=QuestionClassifier(), steps={"coarse_step": config, "fine_step": config},
                          models={SMOLLM2.name: SMOLLM2}, metrics={}, provenance={})

    def change(doc):
        doc["steps"]["fine_step"]["model"]["max_tokens"] = 16

    exc = refused(rewrite(saved, change), ArtifactFormatError, "steps.fine_step.model")
    assert "steps.coarse_step.model" in str(exc)


def test_save_refuses_a_program_missing_steps_or_models(tmp_path):
    with pytest.raises(ArtifactFormatError, match=r"a\.json: steps: configure every step"):
        save_artifact(tmp_path / "a.json", program_ref="programs/trec.py:QuestionClassifier",
                      program=QuestionClassifier(), steps={"coarse_step": sentiment_config(0)},
                      models={}, metrics={}, provenance={})
    with pytest.raises(ArtifactFormatError, match=r"steps\.classify\.model\.name: no ModelSpec"):
        save_artifact(tmp_path / "a.json", program_ref="programs/sentiment.py:Sentiment", program=Sentiment(),
                      steps={"classify": sentiment_config(0, model="local/other")}, models={SMOLLM2.name: SMOLLM2},
                      metrics={}, provenance={})


# --- secrets -------------------------------------------------------------------------------------------


def test_a_modelspec_cannot_carry_a_key_or_credentials_in_its_url():
    with pytest.raises(ValidationError):
        ModelSpec(name="openai/gpt-4o-mini", provider="litellm", api_key="sk-123")  # type: ignore[call-arg]
    for base in ("https://me:pw@api.example.com/v1", "https://api.example.com/v1?token=abc",
                 "https://api.example.com/v1#sk-abc"):
        with pytest.raises(ValidationError, match="api_base must not carry"):
            ModelSpec(name="openai/gpt-4o-mini", provider="litellm", api_base=base)
    assert ModelSpec(name="openai/m", provider="litellm", api_base="http://127.0.0.1:8000/v1").api_base


@pytest.mark.parametrize("base", ["https://api.example.com/v1?token=abc123", "https://me:pw@api.example.com/v1"])
def test_save_refuses_an_api_base_with_credentials(tmp_path, base):
    spec = ModelSpec.model_construct(**{**API.model_dump(), "api_base": base})  # bypasses ModelSpec's own check
    with pytest.raises(ArtifactSecretError, match=r"steps\.classify\.model\.api_base: .*may not carry"):
        save_sentiment(tmp_path / "a.json", spec=spec, n_demos=0)
    assert not (tmp_path / "a.json").exists()


def test_save_refuses_the_value_of_a_secret_env_variable_anywhere(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    with pytest.raises(ArtifactSecretError, match="OPENAI_API_KEY") as info:
        save_sentiment(tmp_path / "a.json", instruction="Classify. Key: sk-test-0123456789")
    assert info.value.json_path == "steps.classify.signature.instructions"
    assert "sk-test-0123456789" not in str(info.value)


def test_an_api_base_with_credentials_on_disk_is_refused_at_load(tmp_path):
    saved = save_sentiment(tmp_path / "a.json", spec=API, n_demos=0)
    assert read_artifact(saved)["steps"]["classify"]["model"]["api_base"] == "https://api.example.com/v1"

    def leak(doc):
        doc["steps"]["classify"]["model"]["api_base"] = "https://me:pw@api.example.com/v1"

    exc = refused(rewrite(saved, leak), ArtifactFormatError, "steps.classify.model.api_base")
    assert "me:pw" not in str(exc)


# --- hostile JSON (issue #36): nothing but an ArtifactError, at the JSON path -------------------------------

FIXTURE = Path(__file__).parent / "fixtures" / "compiled-program.v1.json"
DIGITS = 5000  # past Python's int-conversion limit (4300 digits)


def _edited(tmp_path: Path, old: str, new: str) -> Path:
    """The fixture artifact with ``old`` replaced (lone surrogates written as CESU bytes where unescaped)."""
    text = FIXTURE.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "edited.json"
    path.write_bytes(text.replace(old, new, 1).encode("utf-8", "surrogatepass"))
    return path


VERSION, N_CTX, INSTRUCTIONS = '"format_version": "1.0"', '"n_ctx": 2048', '"Is this movie'


@pytest.mark.parametrize(("old", "new", "error", "json_path", "fragment"), [
    (VERSION, f'"format_version": "{"1" * DIGITS}.0"', ArtifactVersionError, "format_version",
     f"({DIGITS + 2} characters) is not supported"),
    (VERSION, f'"format_version": "{"0" * DIGITS}2.0"', ArtifactVersionError, "format_version", "is not supported"),
    (VERSION, f'"format_version": "1.{"0" * DIGITS}"', ArtifactFormatError, "format_version", "does not match"),
    (VERSION, '"format_version": "\\u0661.0"', ArtifactFormatError, "format_version", "expected 'MAJOR.MINOR'"),
    (VERSION, '"format_version": 1.0', ArtifactFormatError, "format_version", "expected 'MAJOR.MINOR'"),
    (N_CTX, f'"n_ctx": {"9" * DIGITS}', ArtifactFormatError, "steps.classify.model.n_ctx",
     f"an integer of {DIGITS} digits is out of range"),
    (N_CTX, f'"n_ctx": 1{"0" * DIGITS}.5', ArtifactFormatError, "steps.classify.model.n_ctx", "out of range"),
    (N_CTX, '"n_ctx": 1e400', ArtifactFormatError, "steps.classify.model.n_ctx", "the number 1e400 is out of range"),
    (N_CTX, '"n_ctx": -Infinity', ArtifactFormatError, "steps.classify.model.n_ctx", "-Infinity is not valid JSON"),
    (N_CTX, '"n_ctx": NaN', ArtifactFormatError, "steps.classify.model.n_ctx", "NaN is not valid JSON"),
    (N_CTX, '"n_ctx": 2048, "n_ctx": 4096', ArtifactFormatError, "steps.classify.model.n_ctx", "duplicate key"),
    (INSTRUCTIONS, '"\\ud800Is this movie', ArtifactFormatError, "steps.classify.signature.instructions",
     "lone surrogate"),
    (INSTRUCTIONS, '"\\udc00\\ud800Is this movie', ArtifactFormatError, "steps.classify.signature.instructions",
     "lone surrogate"),  # a pair in the wrong order is two lone surrogates
    ('"demos": [', '"\\udfff": 1, "demos": [', ArtifactFormatError, "steps.classify", "key with a lone surrogate"),
    (INSTRUCTIONS, '"\ud800Is this movie', ArtifactFormatError, "$", "not valid JSON"),  # a surrogate as raw bytes
    (INSTRUCTIONS, '"\udcffIs this movie', ArtifactFormatError, "$", "not valid JSON"),
    ('"steps": {', '"steps": ' + '{"a": ' * 60 + "1" + "}" * 60 + ', "x": {', ArtifactFormatError,
     "steps" + ".a" * 47, "nested deeper"),
])
def test_hostile_json_is_an_artifact_error_naming_the_json_path(tmp_path, old, new, error, json_path, fragment):
    path = _edited(tmp_path, old, new)
    exc = refused(path, error, json_path)
    assert fragment in exc.message and len(str(exc)) < 600  # a value of thousands of digits is not echoed whole
    with pytest.raises(error):
        read_artifact(path)


def test_a_byte_order_mark_is_ignored(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + FIXTURE.read_bytes())
    assert read_artifact(path) == read_artifact(FIXTURE)


def test_a_lone_surrogate_is_refused_when_saving_and_hashing(tmp_path):
    from optimizer.artifact.schema import verify_hash

    with pytest.raises(ArtifactFormatError, match=r"steps\.classify\.signature\.instructions: a lone surrogate"):
        save_sentiment(tmp_path / "a.json", instruction="Classify.\ud800", n_demos=0)
    assert not (tmp_path / "a.json").exists()
    doc = read_artifact(FIXTURE)
    doc["steps"]["classify"]["demos"][0]["sentence"] = "x\udfff"
    with pytest.raises(ArtifactFormatError, match=r"steps\.classify\.demos\[0\]\.sentence: a lone surrogate"):
        verify_hash(doc, "built.json")
