"""Label-scoring steps during a compile: which variants cannot be scored (skipped by the search), and the
estimation of each calibrated step's label prior before the variant is evaluated.

Lifecycle: :func:`calibrate_steps` runs on a variant's resolved steps before each evaluation. A step
with ``score`` and calibration ``cc`` or ``bc`` and no prior yet gets one: ``cc`` scores the content-free
inputs (every input field "N/A", "", "[MASK]"), ``bc`` a fixed batch of training inputs (labels unused).
Each is one LM call, on the budget and through DSPy's cache, so the minibatch evaluation pays for the
estimate and the full-validation and test evaluations of the same variant get it from the cache. The
prior is stored in the step's :class:`StepConfig`, hence in the trial record and the artifact.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import dspy

from optimizer.accounting import STOPPING, raise_stopping
from optimizer.adapters.scoring import scoring_support
from optimizer.models import ModelPool
from optimizer.space.build import ConfiguredPredict
from optimizer.space.calibration import distribution, estimate_prior
from optimizer.space.variant import StepConfig, Variant, is_scoring

log = logging.getLogger(__name__)

CONTENT_FREE = ("N/A", "", "[MASK]")
BATCH_SIZE = 8  # training inputs per batch-calibration estimate (each one scoring call)
BATCH_SEED = 0


def unscorable(variant: Variant, pool: ModelPool) -> str | None:
    """Why ``variant`` cannot run (a score strategy on a model or format that cannot score), or None."""
    for name, choice in variant.steps.items():
        if is_scoring(choice.strategy):
            reason = scoring_support(pool[choice.model], choice.format)
            if reason:
                return f"step {name}: {reason}"
    return None


def calibration_inputs(signature: type[dspy.Signature], mode: str,
                       trainset: Sequence[dspy.Example]) -> list[dict[str, Any]]:
    """The inputs whose mean label distribution is the prior: content-free ones (cc), or up to
    :data:`BATCH_SIZE` training inputs that give every input field, drawn with a fixed seed (bc)."""
    fields = list(signature.input_fields)
    if mode == "cc":
        return [dict.fromkeys(fields, text) for text in CONTENT_FREE]
    usable = [ex for ex in trainset if all(ex.get(f) is not None for f in fields)]
    chosen = random.Random(BATCH_SEED).sample(usable, min(BATCH_SIZE, len(usable)))
    return [{f: ex.get(f) for f in fields} for ex in chosen]


def estimate(predictor: ConfiguredPredict, inputs: Sequence[dict[str, Any]]) -> dict[str, float] | None:
    """The mean label distribution of ``predictor`` (uncalibrated) over ``inputs``; a failed call loses
    its input (budget exhaustion stops), and None when every call failed."""
    distributions, keys = [], None
    for values in inputs:
        try:
            labels, logprobs, _ = predictor.scored(**values)
        except STOPPING:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed call loses one input of the estimate
            raise_stopping(exc)
            log.warning("calibration input failed: %s", exc)
            continue
        keys = labels.keys
        distributions.append(distribution(logprobs))
    return estimate_prior(distributions, keys) if keys is not None else None


def calibrate_steps(program: dspy.Module, steps: dict[str, StepConfig], trainset: Sequence[dspy.Example],
                    lm_for: Callable[[str], dspy.LM]) -> dict[str, StepConfig]:
    """``steps`` with a prior estimated for every calibrated score step (or ensemble member) that has none
    (see module doc)."""
    predictors = dict(program.named_predictors())
    return {name: _calibrated(name, predictors[name].signature, config, trainset, lm_for)
            for name, config in steps.items()}


def _calibrated(name: str, signature: type[dspy.Signature], config: StepConfig, trainset: Sequence[dspy.Example],
                lm_for: Callable[[str], dspy.LM]) -> StepConfig:
    if config.strategy == "ensemble":
        return config.model_copy(update={"members": [_calibrated(name, signature, m, trainset, lm_for)
                                                     for m in config.members]})
    if config.strategy != "score" or config.calibration == "none" or config.prior is not None:
        return config
    predictor = ConfiguredPredict(signature, config.model_copy(update={"prior": None}), lm_for(config.model))
    prior = estimate(predictor, calibration_inputs(signature, config.calibration, trainset))
    if prior is None:
        log.warning("step %s: no calibration prior could be estimated; it runs uncalibrated", name)
    return config.model_copy(update={"prior": prior})
