"""The value objects a compile takes besides its program and data, with every choice and default written
once: :func:`optimizer.search.compile.compile`, the ``progopt compile`` options and sweep cells are built
from these (the CLI's choices and defaults are read from them)."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from optimizer.space.variant import Format, strategy_settings

Sampler = Literal["tpe", "nsga2", "random", "coordinate", "exhaustive"]
Objective = Literal["quality", "cost", "latency"]
LabelWords = Literal["signature", "auto"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)
OBJECTIVE_NAMES: tuple[str, ...] = get_args(Objective)
FORMATS: tuple[str, ...] = get_args(Format)
# Searched by default: DSPy's JSON format and the compact one. On SST-2 at 600 calls, compiles searching
# both chose compact and matched or beat every single-format compile (experiments/results/format-choice-*).
DEFAULT_FORMATS: tuple[Format, ...] = ("json", "compact")


class Budget(BaseModel):
    """Limits on the whole compile (candidates, bootstrapping, proposals, evaluation); None = no limit."""

    calls: int | None = None
    cost: float | None = None
    seconds: float | None = None
    trials: int | None = None

    def less(self, share: float) -> Budget:
        """This budget with its calls, cost and seconds lowered by ``share`` (what the search may spend
        when ``share`` is kept for the final selection); trials are unchanged."""
        return Budget(calls=None if self.calls is None else int(self.calls * (1 - share)),
                      cost=None if self.cost is None else self.cost * (1 - share),
                      seconds=None if self.seconds is None else self.seconds * (1 - share), trials=self.trials)


class SearchSettings(BaseModel):
    """How the study searches: the sampler (``sampler``: which variant to try next), the objectives (quality
    first), the seed, the fidelities (a ``minibatch`` screens each trial; the first ``validation`` examples
    score the promoted ones), successive-halving promotion, the final selection (``final_top`` best validated
    variants re-scored on the unused validation examples and held-out training examples with ``final_share``
    of the budget, :mod:`optimizer.search.selection`; 0 or 1 = none, the choice is by validation alone), and
    concurrent examples on API models. ``None`` leaves a setting to the budget
    (:func:`optimizer.search.defaults.scaled`)."""

    model_config = ConfigDict(frozen=True)

    sampler: Sampler = "tpe"
    objectives: tuple[Objective, ...] = ("quality", "cost")
    seed: int = 0
    minibatch: int = Field(16, gt=0)
    validation: int | None = Field(None, gt=0, description="validation examples scoring each promoted variant; "
                                   "the rest re-score the final selection's candidates (None: by budget)")
    promote_fraction: float = Field(1 / 3, gt=0, le=1)
    final_top: int | None = Field(None, ge=0, le=20)
    final_share: float | None = Field(None, gt=0, lt=1)
    num_threads: int = Field(8, gt=0)

    @field_validator("objectives")
    @classmethod
    def _quality_first(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or value[0] != "quality":
            raise ValueError(f"objectives must start with 'quality'; got {list(value)}")
        return value


class SpaceSettings(BaseModel):
    """What each step's search space holds: prompt formats, decoding strategies, the pool members that
    propose instructions and bootstrap demos ("first": the pool's first model; None: none), label-balanced
    demo sets per size (``demo_draws``, each with its own seed and order) and retrieved-demo candidates
    (``retrieval_sizes``: ``knn{k}``, the k most similar training examples per input) and label-word candidates
    for label steps (``label_words``: "signature", "auto"; :mod:`optimizer.verbalizers`). ``None`` (strategies,
    demo draws) leaves the setting to the budget (:func:`optimizer.search.defaults.scaled`); retrieval stays
    opt-in (within the CIs at 3-4x the seconds per example)."""

    model_config = ConfigDict(frozen=True)

    formats: tuple[Format, ...] = DEFAULT_FORMATS
    strategies: tuple[str, ...] | None = None
    proposer: str | None = "first"
    teacher: str | None = "first"
    demo_draws: int | None = Field(None, ge=1, le=64)
    retrieval_sizes: tuple[Annotated[int, Field(ge=1, le=64)], ...] = ()
    label_words: tuple[LabelWords, ...] | None = None

    @field_validator("strategies")
    @classmethod
    def _known_strategies(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for name in value or ():
            strategy_settings(name)
        return value


class Caps(BaseModel):
    """Limits the chosen variant must meet (the highest-quality variant within them is chosen)."""

    model_config = ConfigDict(frozen=True)

    max_cost_per_example: float | None = None
    max_p95_latency_s: float | None = None
