"""Variant samplers (which variant to try next: Optuna's TPE, NSGA-II and random samplers, coordinate ascent,
exhaustive enumeration) on one interface. Not to be confused with decoding strategies (``direct``, ``cot``,
``scK``, ``score``: how one step produces its output, :mod:`optimizer.space.variant`). All trials live in one
Optuna study, whichever sampler proposes them, so storage, resume and reporting are the same for every one.

Lifecycle: before each trial the compile calls :meth:`VariantSampler.optuna_sampler` (a fresh sampler seeded by
``seed + trial number``, so a resumed compile proposes what an uninterrupted one would) and then
:meth:`VariantSampler.next_params`: a params dict to enqueue, ``None`` to let the sampler choose, or
:data:`DONE` to stop. Called from one thread."""

from __future__ import annotations

import itertools
import random
from abc import ABC, abstractmethod
from typing import Any

import optuna
from optuna.trial import TrialState

from optimizer.search.study_store import is_feasible
from optimizer.space.variant import SearchSpace, StepChoice, Variant

DONE = "done"
Params = dict[str, str]


def param_choices(space: SearchSpace) -> dict[str, list[str]]:
    """Optuna parameter name (``step:field``) -> categorical choices, in a fixed order."""
    return {f"{step}:{field}": options for step in space.steps for field, options in space.choices(step).items()}


def variant_from_params(space: SearchSpace, params: Params) -> Variant:
    steps: dict[str, dict[str, str]] = {step: {} for step in space.steps}
    for name, value in params.items():
        step, _, field = name.rpartition(":")
        steps[step][field] = value
    return Variant(steps={step: StepChoice(**fields) for step, fields in steps.items()})


def params_of(variant: Variant) -> Params:
    return {f"{step}:{k}": v for step, c in variant.steps.items() for k, v in c.model_dump().items()}


def _tried(study: optuna.Study) -> set[tuple[tuple[str, Any], ...]]:
    return {tuple(sorted(t.params.items())) for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING, TrialState.PRUNED)}


ENUMERATE_UP_TO = 100_000  # a space this small is enumerated when random draws find nothing untried


def untried(study: optuna.Study, space: SearchSpace, seed: int, draws: int = 200) -> Params | None:
    """A variant no trial of the study holds (random draws, seeded, then enumeration of a small space), or
    None when every variant was tried: what the search runs instead of a sampler's repeat, so a converged
    sampler never leaves budget unused while the space has variants left."""
    choices = param_choices(space)
    tried = _tried(study)
    rng = random.Random(seed)
    for _ in range(draws):
        params = {name: rng.choice(options) for name, options in choices.items()}
        if tuple(sorted(params.items())) not in tried:
            return params
    if space.size() <= ENUMERATE_UP_TO:
        for combo in itertools.product(*choices.values()):
            params = dict(zip(choices, combo, strict=True))
            if tuple(sorted(params.items())) not in tried:
                return params
    return None


class VariantSampler(ABC):
    """Proposes variants; see the module docstring for the lifecycle."""

    name: str

    def optuna_sampler(self, seed: int, multi_objective: bool) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=seed)

    @abstractmethod
    def next_params(self, study: optuna.Study, space: SearchSpace) -> Params | None | str:
        """Params to evaluate next, None (the sampler decides), or DONE."""


class OptunaSearch(VariantSampler):
    """Optuna's samplers: TPE (multivariate; multi-objective when there are several objectives), NSGA-II,
    or random. User caps reach them as Optuna constraints (``Trial.set_constraint``), which they honour."""

    def __init__(self, name: str = "tpe"):
        if name not in ("tpe", "nsga2", "random"):
            raise ValueError(f"unknown Optuna sampler {name!r}")
        self.name = name

    def optuna_sampler(self, seed: int, multi_objective: bool) -> optuna.samplers.BaseSampler:
        if self.name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=10)
        if self.name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=8)
        return optuna.samplers.RandomSampler(seed=seed)

    def next_params(self, study: optuna.Study, space: SearchSpace) -> Params | None | str:
        return None


class Exhaustive(VariantSampler):
    """Every variant of the space in a fixed order: the reference for small spaces."""

    name = "exhaustive"

    def next_params(self, study: optuna.Study, space: SearchSpace) -> Params | None | str:
        choices = param_choices(space)
        tried = _tried(study)
        for combo in itertools.product(*choices.values()):
            params = dict(zip(choices, combo, strict=True))
            if tuple(sorted(params.items())) not in tried:
                return params
        return DONE


class CoordinateAscent(VariantSampler):
    """Change one choice at a time from the best variant so far (as LLMSelector does for model
    assignment); stop when no single change of the best is left untried."""

    name = "coordinate"

    def next_params(self, study: optuna.Study, space: SearchSpace) -> Params | None | str:
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if is_feasible(t)]
        if not done:
            return None  # queued baselines (or the sampler) come first
        best = max(done, key=lambda t: (t.values[0], -t.number))
        tried = _tried(study)
        for name, options in param_choices(space).items():
            for value in options:
                params = {**best.params, name: value}
                if tuple(sorted(params.items())) not in tried:
                    return params
        return DONE


def make_sampler(name: str) -> VariantSampler:
    """'tpe', 'nsga2', 'random', 'coordinate' or 'exhaustive'."""
    if name == "exhaustive":
        return Exhaustive()
    if name == "coordinate":
        return CoordinateAscent()
    return OptunaSearch(name)
