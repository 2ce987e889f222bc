"""The served model's signature and input example come from the artifact's steps, not from running code."""

from __future__ import annotations

from typing import Any

from optimizer.tracking.model import requirements
from optimizer.tracking.serving import input_example, program_fields, signature


def step(inputs: dict[str, Any], outputs: dict[str, Any], demos: list[dict[str, Any]]) -> dict[str, Any]:
    return {"signature": {"inputs": {k: {"description": "", "type": t} for k, t in inputs.items()},
                          "outputs": {k: {"description": "", "type": t} for k, t in outputs.items()}},
            "demos": demos}


COARSE = {"enum": ["ABBR", "NUM"], "type": "string"}
# The two-step TREC classifier: the fine step consumes the coarse step's output.
TWO_STEP = {"steps": {
    "coarse_step": step({"question": {"type": "string"}}, {"coarse": COARSE}, []),
    "fine_step": step({"question": {"type": "string"}, "coarse": COARSE},
                      {"fine": {"enum": ["NUM:date"], "type": "string"}, "entities": {"type": "array"}},
                      [{"question": "When?", "coarse": "NUM", "fine": "NUM:date"}]),
}}


def test_program_inputs_are_step_inputs_no_step_produces():
    inputs, outputs = program_fields(TWO_STEP)
    assert list(inputs) == ["question"]
    assert list(outputs) == ["coarse", "fine", "entities"]


def test_signature_types_and_intermediate_outputs_are_optional():
    sig = signature(TWO_STEP)
    assert sig.inputs.to_dict() == [{"type": "string", "name": "question", "required": True}]
    assert sig.outputs.to_dict() == [{"type": "string", "name": "coarse", "required": False},
                                     {"type": "string", "name": "fine", "required": True},
                                     {"type": "string", "name": "entities", "required": True}]


def test_input_example_from_demos_then_given_rows():
    assert input_example(TWO_STEP) == {"question": "When?"}
    no_demos = {"steps": {"coarse_step": TWO_STEP["steps"]["coarse_step"]}}
    assert input_example(no_demos) is None
    assert input_example(no_demos, [{"sentence": "x"}, {"question": "Who?", "coarse": "HUM"}]) == {"question": "Who?"}


def test_requirements_pin_the_installed_versions():
    from importlib import metadata

    pins = requirements()
    assert f"dspy=={metadata.version('dspy')}" in pins and f"mlflow=={metadata.version('mlflow')}" in pins
    assert all("\n" not in p and p.count("==") == 1 for p in pins)


def test_model_logging_puts_the_tracking_uri_and_its_variable_back(monkeypatch, tmp_path):
    """``mlflow.set_tracking_uri`` also sets ``MLFLOW_TRACKING_URI``: after the block neither may point at the
    block's store (a leaked variable sent a later tracker's runs to another test's database)."""
    import os

    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_uris

    from optimizer.tracking.model import using_tracking_uri

    inner = f"sqlite:///{tmp_path / 'inner.db'}"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(tracking_uris, "_tracking_uri", None)
    with using_tracking_uri(inner):
        assert mlflow.get_tracking_uri() == inner
    assert "MLFLOW_TRACKING_URI" not in os.environ and not mlflow.is_tracking_uri_set()

    outer = f"sqlite:///{tmp_path / 'outer.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", outer)
    with using_tracking_uri(inner):
        assert mlflow.get_tracking_uri() == inner
    assert os.environ["MLFLOW_TRACKING_URI"] == outer and tracking_uris._tracking_uri is None
