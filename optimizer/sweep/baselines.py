"""DSPy's own optimizers as sweep baselines, on one pool model, through the same engines as a progopt compile.
Every LM request of the compile (bootstrapping, proposals, reflection, evaluation) is counted, cache hits
included, so a cell's count is what it costs on a fresh cache and LM-call budgets compare like for like.

The setup is DSPy at its strongest here: the program's own signatures, the chosen adapter (DSPy's default
``ChatAdapter`` by default) over constrained decoding on the local models, the same train/val splits.
"""

from __future__ import annotations

import random
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import dspy
from dspy.utils.callback import BaseCallback

from optimizer.accounting import current_step, in_step
from optimizer.sweep.clock import CallCounter
from optimizer.sweep.config import CellSettings

LABELED_K = 4  # demos per step for LabeledFewShot and the bootstrapping optimizers


def dspy_adapter(settings: CellSettings) -> dspy.Adapter:
    """DSPy's default ``ChatAdapter`` with the reply regex-constrained on local models (progopt's ``chat``
    format), or DSPy's ``JSONAdapter`` (JSON-schema constrained)."""
    from optimizer.space.build import make_adapter

    return make_adapter("chat") if settings.dspy_adapter == "chat" else dspy.JSONAdapter()


class SignatureSteps(BaseCallback):
    """Runs each ``dspy.Predict`` call of a DSPy compile in a step named after its signature's output fields,
    so each predictor of a multi-step program keeps its own llama.cpp instance and warm KV prefix, as the steps
    of a progopt program do (:func:`optimizer.models.local.load`); otherwise the steps evict each other's
    prompt on every example (2.5x slower on the two-step TREC program). DSPy optimizers deep-copy the
    program, so steps are named by signature, not by ``id`` as :class:`~optimizer.accounting.Ledger` names
    them. A call already in a step keeps it. Install with ``dspy.context(callbacks=...)``."""

    def __init__(self) -> None:
        self._open: dict[str, AbstractContextManager[None]] = {}

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        if isinstance(instance, dspy.Predict) and current_step() is None:
            scope = in_step("dspy:" + ",".join(instance.signature.output_fields))
            scope.__enter__()
            self._open[call_id] = scope

    def on_module_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        scope = self._open.pop(call_id, None)
        if scope is not None:
            scope.__exit__(None, None, None)


def _feedback_metric(metric: Any) -> Any:
    """GEPA's metric signature (gold, pred, trace, pred_name, pred_trace) over a plain ``metric(gold, pred)``."""

    def score(gold: dspy.Example, pred: dspy.Prediction, trace: Any = None, pred_name: str | None = None,
              pred_trace: Any = None) -> float:
        return float(metric(gold, pred))

    return score


def _larger_model(settings: CellSettings, task: Any) -> dspy.LM:
    """The pool model with the most parameters (GEPA's reflection LM), else the cell's own model."""
    specs = [task.pool[name] for name in task.pool.names]
    largest = max(specs, key=lambda s: s.params_b or 0.0)
    return task.pool.lm(largest.name if largest.params_b else settings.models[0])


def make_optimizer(settings: CellSettings, task: Any, lm: dspy.LM) -> tuple[Any, dict[str, Any]]:
    """The DSPy teleprompter a cell names (None for ``ZeroShot``), with the sweep's defaults under its
    ``optimizer_args``, and how to call its ``compile``."""
    name, args, metric = settings.optimizer, dict(settings.optimizer_args), task.metric
    if name == "ZeroShot":
        return None, {}
    if name == "LabeledFewShot":
        return dspy.LabeledFewShot(**{"k": LABELED_K, **args}), {}
    if name == "BootstrapFewShot":
        return dspy.BootstrapFewShot(metric=metric, **{"max_bootstrapped_demos": LABELED_K,
                                                       "max_labeled_demos": LABELED_K, **args}), {}
    if name == "BootstrapFewShotWithRandomSearch":
        defaults = {"max_bootstrapped_demos": LABELED_K, "max_labeled_demos": LABELED_K, "num_threads": 1}
        return dspy.BootstrapFewShotWithRandomSearch(metric=metric, **{**defaults, **args}), {"val": True}
    if name == "MIPROv2":
        return dspy.MIPROv2(metric=metric, prompt_model=lm, task_model=lm, **{
            "auto": "light", "num_threads": 1, "seed": settings.seed, **args}), {"val": True, "kw": {
                "requires_permission_to_run": False}}
    if name == "GEPA":
        return dspy.GEPA(metric=_feedback_metric(metric), reflection_lm=_larger_model(settings, task), **{
            "max_metric_calls": settings.budget, "num_threads": 1, "seed": settings.seed, **args}), {"val": True}
    raise ValueError(f"unknown DSPy optimizer {name!r}")


def run_dspy_optimizer(settings: CellSettings, task: Any, train: list, val: list, folder: Path,
                       clock: CallCounter) -> dspy.Module:
    """Compile the cell's program with its DSPy optimizer on its one model, with ``clock`` (a
    :class:`CallCounter`) counting the compile's LM requests and the seconds inside them, each predictor in
    its own step (:class:`SignatureSteps`). The compiled program's demos and instructions are saved to
    ``folder/dspy_program.json`` (DSPy's JSON state, no pickle)."""
    lm = task.pool.lm(settings.models[0])
    optimizer, how = make_optimizer(settings, task, lm)
    random.seed(settings.seed)
    callbacks = [*dspy.settings.callbacks, clock, SignatureSteps()]
    with dspy.context(lm=lm, adapter=dspy_adapter(settings), callbacks=callbacks):
        kwargs = {"trainset": train, **({"valset": val} if how.get("val") else {}), **how.get("kw", {})}
        compiled = optimizer.compile(task.program_class(), **kwargs) if optimizer else task.program_class()
    compiled.save(str(folder / "dspy_program.json"))
    return compiled
