"""A variant is a plain value: one choice per program step. The search space holds the candidate pools
(instructions, demo sets) by id, so a variant stays small and a resumed study sees the same choices.

>>> space.resolve(variant)["classify"].instruction
"""

from __future__ import annotations

import hashlib
import json
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from optimizer.space.retrieval import RetrievalConfig
from optimizer.spans import SpanRule

Format = Literal["json", "chat", "compact"]
STRATEGIES = ("direct", "cot", "sc3", "sc5", "score", "score-cc", "score-bc")
SC_TEMPERATURE = 0.7
Calibration = Literal["none", "cc", "bc"]


def is_scoring(strategy: str) -> bool:
    """Whether a searched strategy name is label scoring (``score``, ``score-cc``, ``score-bc``)."""
    return strategy == "score" or strategy.startswith("score-")


class StepConfig(BaseModel):
    """What one step runs with, fully resolved: the form stored in artifacts."""

    model_config = ConfigDict(extra="forbid")

    instruction: str
    demos: list[dict[str, Any]] = Field(default_factory=list)
    model: str
    strategy: Literal["direct", "cot", "sc", "score", "ensemble"] = "direct"
    samples: int = Field(1, ge=1, description="self-consistency: samples voted on (each a paid call)")
    temperature: float = 0.0
    format: Format = "json"
    calibration: Calibration = Field("none", description="score: how the label prior is estimated "
                                     "(cc: content-free inputs, bc: a batch of training inputs)")
    prior: dict[str, float] | None = Field(None, description="score: the estimated label prior, by label key; "
                                           "None until estimated (uncalibrated)")
    retrieval: RetrievalConfig | None = Field(None, description="per-input retrieved demos (then demos is empty)")
    spans: list[SpanRule] = Field(default_factory=list, description="output strings decoded as copies of an "
                                  "input (optimizer.spans), on local models")
    verbalizer: dict[str, dict[str, str]] = Field(default_factory=dict, description="label words: output field "
                                                  "-> {label: word} the prompt uses (optimizer.verbalizers)")
    members: list[StepConfig] = Field(default_factory=list, description="ensemble: the label-scoring configs "
                                      "whose calibrated label distributions are averaged (the rest of this "
                                      "config repeats the first member's, for display)")


def strategy_settings(strategy: str) -> dict[str, Any]:
    """'direct', 'cot', 'scK' (self-consistency with K samples) or 'score[-cc|-bc]' (label scoring,
    uncalibrated or with contextual / batch calibration) as StepConfig fields."""
    if strategy in ("direct", "cot"):
        return {"strategy": strategy, "samples": 1, "temperature": 0.0}
    if strategy in ("score", "score-cc", "score-bc"):
        return {"strategy": "score", "samples": 1, "temperature": 0.0,
                "calibration": strategy.partition("-")[2] or "none"}
    if strategy.startswith("sc") and strategy[2:].isdigit() and int(strategy[2:]) >= 2:
        return {"strategy": "sc", "samples": int(strategy[2:]), "temperature": SC_TEMPERATURE}
    raise ValueError(f"unknown strategy {strategy!r}: use direct, cot, scK (K >= 2), score, score-cc or score-bc")


KNOB_DEFAULTS = MappingProxyType({"spans": "on", "verbalizer": "labels"})


class StepChoice(BaseModel):
    """One step's point in the search space, by candidate id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instruction: str
    demos: str
    model: str
    strategy: str = "direct"
    format: Format = "json"
    spans: Literal["on", "off"] = Field("on", description="copied-span decoding, for a step with span rules")
    verbalizer: str = Field("labels", description="label words: 'labels' (none) or a candidate of the step")

    @model_serializer(mode="wrap")
    def _without_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Knobs at their default (all a step without the knob's candidates has) are left out, so variants
        keep the keys and params they had before the knob existed."""
        data = handler(self)
        for knob, default in KNOB_DEFAULTS.items():
            if data.get(knob) == default:
                data.pop(knob)
        return data


class Variant(BaseModel):
    """One choice per step, by predictor name; or an ensemble of label-scoring variants (``members``: every
    step averages the members' calibrated label distributions; ``steps`` repeats the first member's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: dict[str, StepChoice]
    members: tuple[Variant, ...] = ()

    @model_serializer(mode="wrap")
    def _without_members(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """No ``members`` key on a single variant, so variants keep the keys they had before ensembles."""
        data = handler(self)
        if not data.get("members"):
            data.pop("members", None)
        return data

    @classmethod
    def ensemble(cls, members: list[Variant]) -> Variant:
        return cls(steps=members[0].steps, members=tuple(members))

    def key(self) -> str:
        """A short stable id: equal variants have equal keys."""
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()[:12]

    def params(self) -> dict[str, str]:
        """Flat ``step.field -> value`` pairs (for Optuna and MLflow params); an ensemble's are its members' keys."""
        if self.members:
            return {"ensemble": ",".join(m.key() for m in self.members)}
        return {f"{step}.{k}": str(v) for step, c in self.steps.items() for k, v in c.model_dump().items()}


class StepSpace(BaseModel):
    """The candidates of one step, by id."""

    model_config = ConfigDict(extra="forbid")

    instructions: dict[str, str]
    demo_sets: dict[str, list[dict[str, Any]]]
    labels_only: bool = Field(False, description="every output field is a label (Literal, Enum, bool): "
                              "the step can use the score strategies")
    retrieved: dict[str, RetrievalConfig] = Field(default_factory=dict, description="retrieved-demo candidates")
    spans: list[SpanRule] = Field(default_factory=list, description="the step's copied-span rules (declared or "
                                  "inferred); spaces stored before them have none")
    verbalizers: dict[str, dict[str, dict[str, str]]] = Field(default_factory=dict, description="label-word "
                                                               "candidates by source ('signature', 'auto')")


class SearchSpace(BaseModel):
    """Everything a compile may choose from. Built once per compile and stored with the study."""

    model_config = ConfigDict(extra="forbid")

    steps: dict[str, StepSpace]
    models: list[str]
    strategies: list[str] = Field(default_factory=lambda: ["direct"])
    formats: list[Format] = Field(default_factory=lambda: ["json"])
    demo_draws: int = 1  # label-balanced sets per demo size (spaces stored before issue #16: 1)
    retrieval_sizes: list[int] = Field(default_factory=list)  # knn{k} candidates per step
    label_words: list[str] = Field(default_factory=list)  # label-word sources searched (spaces before: none)

    def choices(self, step: str) -> dict[str, list[str]]:
        """The categorical choices of ``step``, field by field, in a fixed order."""
        s = self.steps[step]
        strategies = [k for k in self.strategies if s.labels_only or not is_scoring(k)] or ["direct"]
        return {"instruction": list(s.instructions), "demos": [*s.demo_sets, *s.retrieved], "model": self.models,
                "strategy": strategies, "format": list(self.formats), **({"spans": ["on", "off"]} if s.spans else {}),
                **({"verbalizer": ["labels", *s.verbalizers]} if s.verbalizers else {})}

    def size(self) -> int:
        n = 1
        for step in self.steps:
            for options in self.choices(step).values():
                n *= len(options)
        return n

    def resolve(self, variant: Variant) -> dict[str, StepConfig]:
        """The runnable configuration of every step of ``variant`` (an ensemble's: its members' configs)."""
        if variant.members:
            resolved = [self.resolve(m) for m in variant.members]
            return {name: first.model_copy(update={"strategy": "ensemble", "members": [r[name] for r in resolved],
                                                   "verbalizer": {}, "prior": None, "calibration": "none",
                                                   "retrieval": None, "demos": first.demos, "spans": []})
                    for name, first in resolved[0].items()}
        out = {}
        for name, c in variant.steps.items():
            s = self.steps[name]
            demos = {"retrieval": s.retrieved[c.demos]} if c.demos in s.retrieved else {"demos": s.demo_sets[c.demos]}
            out[name] = StepConfig(instruction=s.instructions[c.instruction], model=c.model, format=c.format,
                                   spans=s.spans if c.spans == "on" else [],
                                   verbalizer=s.verbalizers.get(c.verbalizer, {}), **demos,
                                   **strategy_settings(c.strategy))
        return out
