"""Bounds and errors: every count, length, depth and number that costs memory or money is bounded, and any
input loads or raises the project's artifact error with the file and JSON path (a hypothesis fuzz of at
least 10,000 inputs over these tests)."""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.artifact import ArtifactError, ArtifactFormatError, content_hash, load_artifact
from optimizer.artifact.schema import MAX_BYTES, MAX_DEPTH
from tests.fixtures.artifacts import rewrite, save_sentiment

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "compiled-program.v1.json"
VALID = json.loads(FIXTURE.read_text(encoding="utf-8"))

pytestmark = pytest.mark.slow  # hypothesis fuzzing: about 50 s


def fuzz(n: int) -> settings:
    """``n`` derandomized examples (the same inputs every run), no deadline, no example database."""
    return settings(max_examples=n, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture
def saved(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(ROOT)
    return save_sentiment(tmp_path / "a.json", n_demos=2)


@pytest.mark.parametrize(("where", "value", "json_path"), [
    (("steps", "classify", "strategy", "samples"), 10**9, "steps.classify.strategy.samples"),
    (("steps", "classify", "model", "n_ctx"), 10**20, "steps.classify.model.n_ctx"),
    (("steps", "classify", "model", "max_tokens"), 10**6, "steps.classify.model.max_tokens"),
    (("steps", "classify", "model", "temperature"), 50.0, "steps.classify.model.temperature"),
    (("steps", "classify", "demos"), [{"sentence": "x", "sentiment": "positive"}] * 65, "steps.classify.demos"),
    (("steps", "classify", "signature", "instructions"), "x" * 20_001, "steps.classify.signature.instructions"),
    (("provenance", "packages", "dspy"), "0.1.0\n--extra-index-url http://evil.example/simple",
     "provenance.packages.dspy"),
])
def test_costly_values_are_bounded_by_the_schema(saved, where, value, json_path):
    def change(doc):
        target = doc
        for key in where[:-1]:
            target = target[key]
        target[where[-1]] = value

    with pytest.raises(ArtifactFormatError) as info:
        load_artifact(rewrite(saved, change))
    assert info.value.json_path == json_path


@pytest.mark.parametrize(("text", "fragment"), [
    ('{"a": ' * 5000 + "1" + "}" * 5000, "nested deeper"),
    ("[" * 100_000 + "]" * 100_000, "nested deeper"),
    ('{"n": 1' + "0" * 5000 + "}", "out of range"),
    ('{"n": 1e999}', "out of range"),
    ('{"n": NaN}', "not valid JSON"),
    ('{"s": "' + "x" * 300_000 + '"}', "characters"),
    ("[" + "1," * 20_000 + "1]", "items"),
    ("[1, 2]", "expected a JSON object"),
])
def test_pathological_json_raises_the_artifact_error(tmp_path, text, fragment):
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ArtifactFormatError, match=fragment) as info:
        load_artifact(path)
    assert info.value.path == str(path)


def test_an_oversized_file_and_a_directory_raise_the_artifact_error(tmp_path):
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (MAX_BYTES + 1))
    with pytest.raises(ArtifactFormatError, match="MiB"):
        load_artifact(big)
    with pytest.raises(ArtifactFormatError, match="cannot read"):
        load_artifact(tmp_path)
    with pytest.raises(ArtifactFormatError, match="nested deeper"):
        load_artifact(_write(tmp_path / "deep.json", {"steps": _nest(MAX_DEPTH + 5)}))


def _nest(depth: int) -> Any:
    return {"a": _nest(depth - 1)} if depth else 1


def _write(path: Path, doc: Any, rehash: bool = False) -> Path:
    if rehash and isinstance(doc, dict):
        with contextlib.suppress(ValueError, TypeError):  # NaN in the document: leave the hash as it was
            doc["content_sha256"] = content_hash(doc)
    path.write_text(json.dumps(doc, allow_nan=True), encoding="utf-8")
    return path


def _loads_or_artifact_error(path: Path) -> None:
    try:
        load_artifact(path)
    except ArtifactError as exc:
        assert exc.path == str(path) and exc.json_path
    except Exception as exc:  # noqa: BLE001 - the property under test
        raise AssertionError(f"{type(exc).__name__}: {exc}") from exc


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children,
                                                                                       max_size=4), max_leaves=12)
PATHS = [p for p in (
    ("format_version",), ("program",), ("program", "ref"), ("program", "source_sha256"), ("steps",),
    ("steps", "classify"), ("steps", "classify", "demos"), ("steps", "classify", "demos", 0),
    ("steps", "classify", "model"), ("steps", "classify", "model", "name"), ("steps", "classify", "model", "gguf"),
    ("steps", "classify", "model", "n_ctx"), ("steps", "classify", "model", "api_base"),
    ("steps", "classify", "model", "provider"), ("steps", "classify", "strategy", "samples"),
    ("steps", "classify", "strategy", "name"), ("steps", "classify", "format"), ("steps", "classify", "output_schema"),
    ("steps", "classify", "signature", "outputs"), ("steps", "classify", "signature", "inputs", "sentence", "type"),
    ("metrics",), ("metrics", "validation"), ("provenance",), ("provenance", "packages"), ("provenance", "seed"))]


@fuzz(5000)
@given(path=st.sampled_from(PATHS), value=JSON, rehash=st.booleans())
def test_fuzz_structural_mutations_load_or_raise_the_artifact_error(tmp_path_factory, monkeypatch, path, value,
                                                                    rehash):
    monkeypatch.chdir(ROOT)
    doc = copy.deepcopy(VALID)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    _loads_or_artifact_error(_write(tmp_path_factory.getbasetemp() / "mutated.json", doc, rehash))


@fuzz(4000)
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_fuzz_bytes_load_or_raise_the_artifact_error(tmp_path_factory, raw):
    path = tmp_path_factory.getbasetemp() / "bytes.json"
    path.write_bytes(raw)
    _loads_or_artifact_error(path)


@fuzz(1500)
@given(cut=st.integers(0, len(FIXTURE.read_bytes())), junk=st.binary(max_size=16), depth=st.integers(0, 3000))
def test_fuzz_truncated_spliced_and_deep_documents(tmp_path_factory, cut, junk, depth):
    raw = FIXTURE.read_bytes()
    path = tmp_path_factory.getbasetemp() / "spliced.json"
    path.write_bytes(raw[:cut] + junk + raw[cut:] if depth % 2 else b"[" * depth + raw + b"]" * depth)
    _loads_or_artifact_error(path)
