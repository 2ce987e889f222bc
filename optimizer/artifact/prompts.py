"""What each step of an artifact sends to its model, captured without a model.

The artifact is loaded under the user's trust policy (exactly what ``progopt validate`` allows, nothing
more), with every model engine replaced by a recorder that keeps the first request a step makes and stops
the call: the messages, the output constraint and the decoding settings are the ones DSPy and progopt's
adapters really build, not a re-implementation that could drift from them (stanfordnlp/dspy#8042: an
exported prompt that did not match what the framework sent lost 18 points). No model file is opened and
nothing is sent anywhere.

Input values are the user's (``--input``) or placeholders ``{{field}}`` (MLflow's prompt-template syntax),
so a captured request is also a template: :func:`fill` puts values in the way DSPy formats them.

>>> views = step_views("out/sst2.json", inputs=None)        # placeholders
>>> views["classify"].messages[-1]["content"]
'[[ ## sentence ## ]]\\n{{sentence}}\\n\\nRespond with ...'
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import dspy
from dspy.lm15 import Request

from optimizer.artifact.load import load_artifact, read_artifact
from optimizer.artifact.trust import TrustPolicy
from optimizer.models.base import API, LOCAL, Engine, Generation
from optimizer.models.engine import constraint_of, prompt_text
from optimizer.models.prompt import chat_messages
from optimizer.models.spec import ModelSpec


class _Captured(BaseException):
    """Carries a step's request out of DSPy (a BaseException: no adapter fallback catches and retries it)."""

    def __init__(self, request: Request):
        super().__init__("captured")
        self.request = request


class _CaptureApi(Engine):
    """An engine that records the request and stops, declaring an API model's capabilities."""

    capabilities = API

    def generate(self, request: Request) -> Generation:
        raise _Captured(request)


class _CaptureLocal(_CaptureApi):
    capabilities = LOCAL


def capture_engine(spec: ModelSpec) -> Engine:
    """A recorder with the capabilities of the engine it stands for, so the adapters build the very request
    they would build for the real model."""
    return _CaptureLocal(spec) if spec.provider == "local" else _CaptureApi(spec)


@dataclass(frozen=True)
class StepView:
    """One step as its model receives it. ``messages`` for a chat model (rendered with the model's chat
    template by llama.cpp or the provider); ``prompt`` is the whole text for a base model (``chat: false``);
    ``constraint`` is ``("json_schema", schema)``, ``("regex", pattern)`` or None; ``notes`` say what an
    export cannot reproduce."""

    step: str
    model: dict[str, Any]
    format: str
    strategy: dict[str, Any]
    messages: list[dict[str, str]]
    prompt: str | None
    constraint: tuple[str, Any] | None
    max_tokens: int | None
    temperature: float | None
    variables: list[str]
    demos: int
    notes: list[str] = field(default_factory=list)
    direct: StepView | None = None  # label scoring or self-consistency: the nearest direct request


@contextmanager
def _no_response_cache() -> Iterator[None]:
    """DSPy's response cache off for the block, so every step's request reaches the recorder (a cached answer
    from an earlier real run would skip it). Process-wide while it lasts: for one-shot commands."""
    cache = dspy.cache
    saved = cache.enable_memory_cache, cache.enable_disk_cache
    cache.enable_memory_cache = cache.enable_disk_cache = False
    try:
        yield
    finally:
        cache.enable_memory_cache, cache.enable_disk_cache = saved


def placeholder(name: str) -> str:
    return "{{" + name + "}}"


def _notes(step: dict[str, Any]) -> list[str]:
    strategy, notes = step["strategy"], []
    if strategy["name"] == "score":
        mode = (strategy.get("calibration") or {}).get("mode", "none")
        notes.append("label scoring: progopt scores every label's log-probability after this prompt"
                     + (f" and divides by a {mode} prior" if mode != "none" else "")
                     + "; outside progopt, the nearest equivalent is this prompt decoded directly (constrained "
                     "to the labels)")
    if strategy["name"] == "ensemble":
        models = ", ".join(m["model"]["name"] for m in step["members"])
        notes.append(f"ensemble: progopt averages the calibrated label scores of {len(step['members'])} members "
                     f"({models}), one scoring call each; shown: the first member's request")
    if strategy["name"] == "sc":
        notes.append(f"self-consistency: progopt draws {strategy['samples']} samples at temperature "
                     f"{strategy['temperature']} and takes the majority; the request is one sample")
    if step.get("retrieval"):
        notes.append("retrieved demos: progopt picks this step's demos per input; shown with the input given")
    for name, words in (step.get("verbalizer") or {}).items():
        notes.append(f"label words: the model answers `{name}` with a word that progopt maps back to its label "
                     f"(word -> label: {json.dumps({w: label for label, w in words.items()}, ensure_ascii=False)})")
    return notes


def _view(name: str, step: dict[str, Any], request: Request, variables: list[str]) -> StepView:
    constraint = constraint_of(request)
    pair = None if constraint is None else (
        constraint.kind, json.loads(constraint.pattern) if constraint.kind == "json_schema" else constraint.pattern)
    model = step["model"]
    prompt = prompt_text(request, model.get("chat", True)) if model["provider"] == "local" else None
    return StepView(step=name, model=model, format=step["format"], strategy=step["strategy"],
                    messages=chat_messages(request), prompt=prompt, constraint=pair,
                    max_tokens=request.config.max_tokens, temperature=request.config.temperature,
                    variables=variables, demos=len(step["demos"]), notes=_notes(step))


def step_views(path: str | Path, *, inputs: Mapping[str, Any] | None = None, step: str | None = None,
               trust: TrustPolicy | None = None, program: type[dspy.Module] | None = None) -> dict[str, StepView]:
    """Each step's request (or only ``step``'s), for ``inputs`` or with ``{{field}}`` placeholders. Each step
    is called directly with its own input fields (taken from ``inputs`` by name, else placeholders), so a
    later step is shown without running the earlier ones. Raises ``ArtifactError`` like ``load_artifact``;
    ``KeyError`` for an unknown ``step``."""
    doc = read_artifact(path)
    steps = doc["steps"]
    if step is not None and step not in steps:
        raise KeyError(f"no step {step!r} in {path} (steps: {', '.join(steps)})")
    built = load_artifact(path, trust=trust, program=program, engine_for=capture_engine)
    predictors = dict(built.named_predictors())
    views = {}
    with _no_response_cache():
        for name in [step] if step is not None else list(steps):
            fields = list(predictors[name].signature.input_fields)
            values = {f: (inputs or {}).get(f, placeholder(f)) for f in fields}
            variables = [f for f in fields if f not in (inputs or {})]
            view = _view(name, steps[name], _capture(predictors[name], values), variables)
            config = predictors[name].step_config
            if config.strategy != "direct":  # the same step decoded directly: what an export can send
                predictors[name].step_config = config.model_copy(update={
                    "strategy": "direct", "samples": 1, "temperature": 0.0, "calibration": "none", "prior": None})
                direct = {**steps[name], "strategy": {"name": "direct", "samples": 1, "temperature": 0.0}}
                view = replace(view, direct=_view(name, direct, _capture(predictors[name], values), variables))
            views[name] = view
    return views


def _capture(predictor: Any, values: Mapping[str, Any]) -> Request:
    try:
        predictor(**values)
    except _Captured as captured:
        return captured.request
    raise RuntimeError("the step made no model request")  # a ConfiguredPredict always makes one


def fill(text: str, values: Mapping[str, Any]) -> str:
    """``text`` with each ``{{field}}`` replaced by its value as DSPy writes an input value (strings as they
    are, anything else as JSON)."""
    for name, value in values.items():
        text = text.replace(placeholder(name), value if isinstance(value, str) else json.dumps(value))
    return text
