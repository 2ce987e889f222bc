"""Steps as artifact JSON and back, and the check that a program still matches its artifact.

Signature fields are described and matched by name, never by position; a field's type is the JSON Schema
of its annotation (pydantic ``TypeAdapter(annotation).json_schema()``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dspy
from pydantic import TypeAdapter
from pydantic.fields import FieldInfo

from optimizer.artifact.errors import SignatureDriftError
from optimizer.artifact.schema import json_path
from optimizer.models.spec import ModelSpec
from optimizer.space.build import REASONING_FIELD
from optimizer.space.variant import StepConfig
from optimizer.verbalizers import check as check_verbalizer
from optimizer.verbalizers import verbalize_signature

KINDS = {"inputs": "input_fields", "outputs": "output_fields"}


def field_type(annotation: Any) -> dict[str, Any]:
    """The JSON Schema of a field annotation, e.g. ``Literal["a", "b"]`` -> ``{"enum": [...], ...}``."""
    return TypeAdapter(annotation).json_schema()


def _description(field: FieldInfo) -> str:
    return str((field.json_schema_extra or {}).get("desc", ""))  # type: ignore[union-attr]


def describe_fields(fields: dict[str, FieldInfo]) -> dict[str, Any]:
    """``{name: {"description": ..., "type": <JSON Schema>}}`` for signature fields."""
    return {name: {"description": _description(f), "type": field_type(f.annotation)} for name, f in fields.items()}


def output_schema(signature: type[dspy.Signature], strategy: str) -> dict[str, Any]:
    """The JSON Schema of a step's output object: its output fields (``reasoning`` first under cot),
    all required, no other keys; nested definitions are hoisted to the top-level ``$defs``."""
    types = {name: f.annotation for name, f in signature.output_fields.items()}
    if strategy == "cot":
        types = {REASONING_FIELD: str, **types}
    properties, defs = {}, {}
    for name, annotation in types.items():
        sub = field_type(annotation)
        for key, definition in sub.pop("$defs", {}).items():
            if defs.setdefault(key, definition) != definition:
                raise ValueError(f"two output types define different schemas named {key!r}")
        properties[name] = sub
    out: dict[str, Any] = {"type": "object", "properties": properties, "required": list(properties),
                           "additionalProperties": False}
    return {**out, "$defs": defs} if defs else out


def _strategy(config: StepConfig) -> dict[str, Any]:
    return {"name": config.strategy, "samples": config.samples, "temperature": config.temperature,
            **({"calibration": {"mode": config.calibration, "prior": config.prior}}
               if config.strategy == "score" else {})}


def describe_member(config: StepConfig, spec: ModelSpec) -> dict[str, Any]:
    """One ensemble member as artifact JSON (``steps.<name>.members[i]``): what differs between members."""
    return {"instructions": config.instruction, "demos": config.model_dump(mode="json")["demos"],
            "model": spec.model_dump(mode="json"), "strategy": _strategy(config), "format": config.format,
            **({"retrieval": config.retrieval.model_dump(mode="json")} if config.retrieval else {}),
            **({"verbalizer": config.verbalizer} if config.verbalizer else {})}


def member_config(member: dict[str, Any]) -> StepConfig:
    """The :class:`StepConfig` of a (validated) ensemble member object."""
    strategy, calibration = member["strategy"], member["strategy"].get("calibration") or {}
    return StepConfig(instruction=member["instructions"], demos=member["demos"], model=member["model"]["name"],
                      strategy=strategy["name"], samples=strategy["samples"], temperature=strategy["temperature"],
                      format=member["format"], calibration=calibration.get("mode", "none"),
                      prior=calibration.get("prior"), retrieval=member.get("retrieval"),
                      verbalizer=member.get("verbalizer") or {})


def describe_step(signature: type[dspy.Signature], config: StepConfig, spec: ModelSpec,
                  member_specs: list[ModelSpec] | None = None) -> dict[str, Any]:
    """One step as artifact JSON (the ``steps.<name>`` object); ``retrieval`` (settings and the demo pool the
    loader rebuilds its index from) only for a step with retrieved demos, and ``spans`` only for a step with
    copied-span rules, ``verbalizer`` only for a step with label words, so older artifacts stay valid."""
    retrieval = {"retrieval": config.retrieval.model_dump(mode="json")} if config.retrieval else {}
    return {
        "signature": {"instructions": config.instruction, "inputs": describe_fields(signature.input_fields),
                      "outputs": describe_fields(signature.output_fields)},
        "demos": config.model_dump(mode="json")["demos"],
        "model": spec.model_dump(mode="json"),
        "strategy": _strategy(config),
        "format": config.format,
        "output_schema": output_schema(signature, config.strategy),
        **retrieval,
        **({"spans": [r.model_dump(mode="json") for r in config.spans]} if config.spans else {}),
        **({"verbalizer": config.verbalizer} if config.verbalizer else {}),
        **({"members": [describe_member(m, s) for m, s in zip(config.members, member_specs or [], strict=True)]}
           if config.members else {}),
    }


def step_config(step: dict[str, Any]) -> StepConfig:
    """The :class:`StepConfig` a (validated) ``steps.<name>`` object describes."""
    strategy = step["strategy"]
    calibration = strategy.get("calibration") or {}
    return StepConfig(instruction=step["signature"]["instructions"], demos=step["demos"],
                      model=step["model"]["name"], strategy=strategy["name"], samples=strategy["samples"],
                      temperature=strategy["temperature"], format=step["format"],
                      calibration=calibration.get("mode", "none"), prior=calibration.get("prior"),
                      retrieval=step.get("retrieval"), spans=step.get("spans") or [],
                      verbalizer=step.get("verbalizer") or {},
                      members=[member_config(m) for m in step.get("members") or []])


def _names(names: Any) -> str:
    return ", ".join(sorted(names)) or "none"


def _check_fields(path: Path | str, at: tuple[str, ...], program_fields: dict[str, FieldInfo],
                  saved: dict[str, Any], kind: str) -> None:
    for name in saved:
        if name not in program_fields:
            raise SignatureDriftError(path, json_path((*at, name)), f"the program has no {kind[:-1]} field "
                                      f"{name!r} (its {kind}: {_names(program_fields)}); a renamed field?")
    for name, field in program_fields.items():
        if name not in saved:
            raise SignatureDriftError(path, json_path(at), f"the program's {kind[:-1]} field {name!r} is not in "
                                      f"the artifact (it has: {_names(saved)})")
        try:
            actual = field_type(field.annotation)
        except Exception as exc:  # noqa: BLE001 - any annotation pydantic cannot describe is drift
            actual = {"error": f"{type(exc).__name__}: {exc}"}
        if actual != saved[name]["type"]:
            raise SignatureDriftError(path, json_path((*at, name, "type")), f"the program's type is {actual}, "
                                      f"the artifact's is {saved[name]['type']}")


def _check_labels(path: Path | str, name: str, signature: type[dspy.Signature],
                  prior: dict[str, float] | None, verbalizer: dict[str, dict[str, str]]) -> None:
    """A scored step needs label outputs, and its calibration prior must be over exactly those labels (or
    their words, under a verbalizer)."""
    from optimizer.adapters.scoring import label_set

    labels = label_set(verbalize_signature(signature, verbalizer) if verbalizer else signature)
    at = ("steps", name, "strategy")
    if labels is None:
        raise SignatureDriftError(path, json_path(at), "the step scores labels, but the program's outputs are "
                                  "not all labels (Literal, Enum, bool)")
    if prior is not None and set(prior) != set(labels.keys):
        raise SignatureDriftError(path, json_path((*at, "calibration", "prior")), f"the prior is over "
                                  f"{_names(prior)}; the program's labels are {_names(labels.keys)}")


def _check_retrieval(path: Path | str, step: str, signature: type[dspy.Signature],
                     retrieval: dict[str, Any] | None) -> None:
    """Retrieval compares the step's input fields and balances over one of its output fields."""
    if retrieval is None:
        return
    at = ("steps", step, "retrieval")
    for field in retrieval["inputs"]:
        if field not in signature.input_fields:
            raise SignatureDriftError(path, json_path((*at, "inputs")), f"{field!r} is not an input field of the "
                                      f"step (its inputs: {_names(signature.input_fields)})")
    label = retrieval["label_field"]
    if label is not None and label not in signature.output_fields:
        raise SignatureDriftError(path, json_path((*at, "label_field")), f"{label!r} is not an output field of "
                                  f"the step (its outputs: {_names(signature.output_fields)})")


def _check_members(path: Path | str, name: str, signature: type[dspy.Signature], step: dict[str, Any]) -> None:
    """An ensemble step has label-scoring members (each checked as a scored step), and only an ensemble has
    members."""
    members, at = step.get("members") or [], ("steps", name)
    if (step["strategy"]["name"] == "ensemble") != bool(members):
        raise SignatureDriftError(path, json_path((*at, "members")), "an ensemble step needs members, and only "
                                  "an ensemble step may have them")
    for i, member in enumerate(members):
        if member["strategy"]["name"] != "score":
            raise SignatureDriftError(path, json_path((*at, "members", i, "strategy", "name")),
                                      "ensemble members score labels (strategy 'score')")
        words = member.get("verbalizer") or {}
        try:
            check_verbalizer(signature, words)
        except ValueError as exc:
            raise SignatureDriftError(path, json_path((*at, "members", i, "verbalizer")), str(exc)) from None
        _check_labels(path, name, signature, (member["strategy"].get("calibration") or {}).get("prior"), words)
        _check_retrieval(path, name, signature, member.get("retrieval"))


def check_program(program: dspy.Module, steps: dict[str, Any], path: Path | str) -> None:
    """Refuse a program whose step names, field names, field types or output schemas differ from ``steps``."""
    predictors = dict(program.named_predictors())
    for name in steps:
        if name not in predictors:
            raise SignatureDriftError(path, json_path(("steps", name)), f"{type(program).__name__} has no step "
                                      f"{name!r} (its steps: {_names(predictors)})")
    for name in predictors:
        if name not in steps:
            raise SignatureDriftError(path, "steps", f"{type(program).__name__}'s step {name!r} is not in the "
                                      f"artifact (it has: {_names(steps)})")
    for name, step in steps.items():
        signature = predictors[name].signature
        for kind, attr in KINDS.items():
            _check_fields(path, ("steps", name, "signature", kind), getattr(signature, attr),
                          step["signature"][kind], kind)
        _check_retrieval(path, name, signature, step.get("retrieval"))
        for i, rule in enumerate(step.get("spans") or []):
            if rule["source"] not in signature.input_fields:
                raise SignatureDriftError(path, json_path(("steps", name, "spans", i, "source")),
                                          f"{rule['source']!r} is not an input field of step {name!r} (its "
                                          f"inputs: {_names(signature.input_fields)})")
        if step.get("verbalizer"):
            try:
                check_verbalizer(signature, step["verbalizer"])
            except ValueError as exc:
                raise SignatureDriftError(path, json_path(("steps", name, "verbalizer")), str(exc)) from None
        if output_schema(signature, step["strategy"]["name"]) != step["output_schema"]:
            raise SignatureDriftError(path, json_path(("steps", name, "output_schema")),
                                      "the program's output schema differs (reordered output fields?)")
        if step["strategy"]["name"] == "score":
            _check_labels(path, name, signature, (step["strategy"].get("calibration") or {}).get("prior"),
                          step.get("verbalizer") or {})
        _check_members(path, name, signature, step)


def apply_descriptions(program: dspy.Module, steps: dict[str, Any]) -> None:
    """Give ``program``'s (checked) signatures the artifact's field descriptions, so prompts are the saved ones."""
    for name, predictor in program.named_predictors():
        signature = predictor.signature
        for kind in KINDS:
            for field, saved in steps[name]["signature"][kind].items():
                signature = signature.with_updated_fields(field, desc=saved["description"])
        predictor.signature = signature
