"""Calibrated label choice from scored labels: the math, no model.

A scoring pass gives each label (label combination, for a step with several label outputs) a summed
log-prob. The label distribution is their softmax. Calibration divides it by a prior and renormalises:
contextual calibration (Zhao et al. 2021) takes the prior as the mean distribution for content-free
inputs ("N/A", "", "[MASK]"); batch calibration (Zhou et al. 2023) as the mean distribution over a batch
of inputs. The prediction is the calibrated argmax; its calibrated probability is the confidence.

>>> choose([-0.1, -2.5], prior={"positive": 0.9, "negative": 0.1}, keys=["positive", "negative"])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

# Floor for prior probabilities: a label the content-free inputs never predict must not divide by ~0.
PRIOR_FLOOR = 1e-12


def distribution(logprobs: Sequence[float]) -> np.ndarray:
    """The softmax of summed label log-probs: a distribution over the labels."""
    x = np.asarray(logprobs, dtype=np.float64)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"label log-probs must be finite and non-empty, got {list(logprobs)}")
    x = np.exp(x - x.max())
    return x / x.sum()


def estimate_prior(distributions: Sequence[np.ndarray], keys: Sequence[str]) -> dict[str, float]:
    """The mean of ``distributions`` (one per content-free or batch input), by label key."""
    if not distributions:
        raise ValueError("a prior needs at least one label distribution")
    mean = np.mean(np.stack([np.asarray(d, dtype=np.float64) for d in distributions]), axis=0)
    if mean.shape != (len(keys),):
        raise ValueError(f"distributions over {mean.shape} labels for {len(keys)} label keys")
    return {key: float(p) for key, p in zip(keys, mean / mean.sum(), strict=True)}


def calibrate(probs: np.ndarray, prior: Mapping[str, float] | None, keys: Sequence[str]) -> np.ndarray:
    """``probs / prior`` renormalised (``probs`` itself when there is no prior). A prior must name exactly
    ``keys``: one estimated for other labels is refused, never applied by position."""
    if prior is None:
        return probs
    if set(prior) != set(keys):
        raise ValueError(f"the calibration prior is over {sorted(prior)}, the step's labels are {sorted(keys)}")
    weights = np.maximum(np.array([prior[k] for k in keys], dtype=np.float64), PRIOR_FLOOR)
    q = probs / weights
    return q / q.sum()


def choose(logprobs: Sequence[float], prior: Mapping[str, float] | None,
           keys: Sequence[str]) -> tuple[int, float]:
    """The index of the chosen label (calibrated argmax; ties to the first) and its confidence."""
    q = calibrate(distribution(logprobs), prior, keys)
    best = int(np.argmax(q))
    return best, float(q[best])
