"""The artifact format: the schema contract, what a saved artifact holds, and loading without running models."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import jsonschema
import pytest

from optimizer.artifact import ArtifactIntegrityError, TrustPolicy, load_artifact, read_artifact, save_result, schema
from optimizer.artifact.schema import SCHEMA_FILE, content_hash, json_path
from optimizer.artifact.signature import describe_step, output_schema, step_config
from optimizer.models import GEMMA3, SMOLLM2, ModelPool, ModelSpec
from optimizer.records import CompileResult, TrialRecord
from optimizer.refs import source_hash
from optimizer.space import ConfiguredPredict, SearchSpace, StepChoice, StepConfig, StepSpace, Variant
from programs.entities import EntityExtractor
from programs.sentiment import ClassifySentiment, Sentiment
from tests.fixtures.artifacts import INSTRUCTION, SUMMARY, rewrite, save_sentiment, sentiment_config, write_program

ROOT = Path(__file__).resolve().parent.parent


def test_packaged_schema_is_byte_identical_to_the_published_one():
    published = ROOT / "schemas" / SCHEMA_FILE
    assert (ROOT / "optimizer" / "artifact" / SCHEMA_FILE).read_bytes() == published.read_bytes()


def test_schema_is_valid_draft_2020_12_and_closes_every_fixed_object():
    jsonschema.Draft202012Validator.check_schema(schema())

    def walk(node):
        if isinstance(node, dict):
            if "properties" in node:
                assert node.get("additionalProperties") is False, node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema())


def test_schema_model_matches_modelspec_field_for_field():
    model = schema()["$defs"]["model"]
    assert set(model["properties"]) == set(ModelSpec.model_fields) == set(model["required"])


@pytest.mark.parametrize("strategy", ["direct", "cot", "sc5"])
def test_a_step_round_trips_through_json_unchanged(strategy):
    from optimizer.space import strategy_settings

    config = sentiment_config(2, **strategy_settings(strategy))
    step = json.loads(json.dumps(describe_step(ClassifySentiment, config, GEMMA3)))
    assert step_config(step) == config
    assert list(step["output_schema"]["properties"]) == (["reasoning"] if strategy == "cot" else []) + ["sentiment"]


def test_output_schema_hoists_nested_definitions_and_validates_outputs():
    signature = dict(EntityExtractor().named_predictors())["extract"].signature
    out = output_schema(signature, "direct")
    validator = jsonschema.Draft202012Validator(out)
    assert validator.is_valid({"entities": [{"text": "EU", "type": "ORG"}]})
    assert not validator.is_valid({"entities": [{"text": "EU", "type": "CITY"}]})
    assert not validator.is_valid({"entities": [], "extra": 1})


def test_saved_artifact_holds_steps_by_name_with_model_metrics_and_provenance(tmp_path):
    doc = read_artifact(save_sentiment(tmp_path / "a.json"))
    step = doc["steps"]["classify"]
    assert step["signature"]["instructions"] == INSTRUCTION
    assert step["signature"]["inputs"]["sentence"]["description"] == "a sentence from a movie review"
    assert step["signature"]["outputs"]["sentiment"]["type"] == {"enum": ["negative", "positive"], "type": "string"}
    assert len(step["demos"]) == 4 and step["model"] == GEMMA3.model_dump()
    assert doc["metrics"]["validation"]["score_ci"] == [0.68, 0.9] and "by_model" not in doc["metrics"]["validation"]
    assert doc["metrics"]["test"] is None
    assert doc["program"]["source_sha256"] == source_hash("programs/sentiment.py:Sentiment")
    prov = doc["provenance"]
    assert prov["seed"] == 7 and set(prov["packages"]) == {"dspy", "optuna", "outlines", "llama-cpp-python", "progopt"}
    assert prov["packages"]["dspy"] and len(prov["git_commit"] or "0" * 40) == 40
    assert doc["content_sha256"] == content_hash(doc)


def test_saving_twice_gives_identical_bytes_and_leaves_no_temp_file(tmp_path):
    first = save_sentiment(tmp_path / "a.json").read_bytes()
    assert save_sentiment(tmp_path / "a.json").read_bytes() == first
    assert os.listdir(tmp_path) == ["a.json"]


def test_load_builds_configured_steps_without_touching_the_program_class(tmp_path):
    program = load_artifact(save_sentiment(tmp_path / "a.json", n_demos=2))
    step = program.classify
    assert isinstance(step, ConfiguredPredict)
    assert step.step_config == sentiment_config(2)
    assert step.signature.instructions == INSTRUCTION and len(step.demos) == 2
    assert step.lm.model == GEMMA3.name
    assert Sentiment().classify.signature.instructions != INSTRUCTION


def test_a_changed_field_description_loads_with_the_saved_description(tmp_path):
    saved = save_sentiment(tmp_path / "a.json", program_ref=write_program(tmp_path))
    ref = write_program(tmp_path, "redescribed")
    path = Path(ref.partition(":")[0])
    path.write_text(path.read_text().replace("a sentence from a movie review", "any text"))
    rewrite(saved, lambda doc: doc["program"].update(ref=ref))
    drifted = TrustPolicy.from_env(trust=[tmp_path], allow_source_drift=True)
    field = load_artifact(saved, trust=drifted).classify.signature.input_fields["sentence"]
    assert field.json_schema_extra["desc"] == "a sentence from a movie review"


def _compile_result(chosen: StepConfig, program_hash: str) -> CompileResult:
    space = SearchSpace(steps={"classify": StepSpace(instructions={"i0": INSTRUCTION}, demo_sets={"d0": chosen.demos})},
                        models=[GEMMA3.name, SMOLLM2.name])
    variant = Variant(steps={"classify": StepChoice(instruction="i0", demos="d0", model=GEMMA3.name)})

    def record(stage: str, score: float, number: int = -1) -> TrialRecord:
        return TrialRecord(number=number, variant_key=variant.key(), variant=variant, steps={"classify": chosen},
                           stage=stage, examples=50, summary={**SUMMARY, "score": score})

    return CompileResult(program="programs/sentiment.py:Sentiment", program_hash=program_hash, seed=11,
                         budget={}, spent={}, space=space, datasets={"val": "a" * 64, "test": "b" * 64},
                         trials=[record("minibatch", 0.5, 0), record("full", 0.75, 0)], baselines=[],
                         front=[variant.key()], chosen=variant.key(), test=[record("test", 0.7)],
                         tracking_run_id="run-42")


def test_save_result_takes_the_chosen_steps_full_and_test_metrics_and_provenance(tmp_path):
    chosen = sentiment_config(2)
    result = _compile_result(chosen, source_hash("programs/sentiment.py:Sentiment"))
    doc = read_artifact(save_result(result, tmp_path / "r.json", program=Sentiment(), pool=ModelPool.default()))
    assert step_config(doc["steps"]["classify"]) == chosen
    assert doc["metrics"]["validation"]["score"] == 0.75 and doc["metrics"]["test"]["score"] == 0.7
    prov = doc["provenance"]
    assert (prov["seed"], prov["tracking_run_id"], prov["datasets"]["test"]) == (11, "run-42", "b" * 64)


def test_save_result_refuses_a_program_changed_since_the_compile(tmp_path):
    result = _compile_result(sentiment_config(2), "f" * 64)
    with pytest.raises(ArtifactIntegrityError, match="program.source_sha256: .*changed since the compile"):
        save_result(result, tmp_path / "r.json", program=Sentiment(), pool=ModelPool.default())
    assert not (tmp_path / "r.json").exists()


# Who may import code by name, and what: the CLI its own subcommand modules (fixed names), trusted_files a
# top-level find_spec (which runs no package code) for a distribution the user named, refs.py the rest.
IMPORTERS_ALLOWED = {"cli.py": {"import_module"}, "trusted_files.py": {"find_spec"},
                     "refs.py": {"import_module", "exec_module", "spec_from_file_location"}}


def test_no_module_of_the_package_unpickles_evals_or_imports_code_outside_refs():
    """The whole package (every path an artifact or a user's file passes through): no pickle, no eval, and
    code imported by name only where :data:`IMPORTERS_ALLOWED` says."""
    banned_modules = {"pickle", "cloudpickle", "dill", "marshal", "shelve"}
    banned_calls = {"eval", "exec", "compile", "__import__"}
    importers = {"import_module", "exec_module", "find_spec", "spec_from_file_location", "load_module",
                 "run_path", "run_module", "SourceFileLoader", "module_from_spec"}
    files = sorted((ROOT / "optimizer").rglob("*.py"))
    assert len(files) > 80
    for file in files:
        tree = ast.parse(file.read_text(encoding="utf-8"))
        bound = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not {n.split(".")[0] for n in names} & (banned_modules | {"runpy"}), (file, names)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in banned_calls - bound, (file, node.func.id)  # progopt's compile is ok
            if isinstance(node, ast.Attribute) and node.attr in importers:
                assert node.attr in IMPORTERS_ALLOWED.get(file.name, set()) or \
                    (file.name == "refs.py" and node.attr == "module_from_spec"), (file, node.attr)


@pytest.mark.parametrize(("parts", "expected"), [
    ((), "$"), (("steps", "classify", "model", "name"), "steps.classify.model.name"),
    (("steps", "a.b", "demos", 2), 'steps["a.b"].demos[2]'), (("steps", "steps[1]"), 'steps["steps[1]"]'),
])
def test_json_paths_are_dotted_with_quoted_odd_keys(parts, expected):
    assert json_path(parts) == expected
