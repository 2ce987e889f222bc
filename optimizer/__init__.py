"""progopt: jointly optimize each step's instruction, demos, prompt format, model and decoding strategy
of a typed DSPy program, for quality, cost and latency, with constrained structured outputs.

>>> import optimizer as progopt
>>> result = progopt.compile(Sentiment(), trainset=train, valset=val, metric=metric,
...                          budget=progopt.Budget(calls=1500), testset=test)
>>> progopt.save_result(result, "sentiment.json")  # the chosen variant as a JSON artifact
>>> program = progopt.load("sentiment.json")

Heavy parts (the artifact loader, MLflow) are imported on first use.
"""

from __future__ import annotations

from typing import Any

from optimizer.data import DataError, Task, load_examples
from optimizer.evaluate import Evaluation, evaluate
from optimizer.models import ModelPool, ModelSpec
from optimizer.records import CompileResult, TrialRecord
from optimizer.search.compile import Budget, Caps, SearchSettings, SpaceSettings, compile
from optimizer.space import SearchSpace, StepConfig, Variant

__all__ = ["Budget", "Caps", "CompileResult", "DataError", "Evaluation", "ModelPool", "ModelSpec", "SearchSettings",
           "SearchSpace", "SpaceSettings", "StepConfig", "Task", "TrialRecord", "Variant", "compile", "evaluate",
           "load", "load_examples", "save_result"]


def load(path: str, *, program: type | None = None, trust: Any = None) -> Any:
    """Load a compiled JSON artifact as a runnable program (validated, hash-checked, no pickle). ``program``
    is the class to configure (nothing imported); otherwise the artifact's reference is imported only from a
    trusted root or an installed distribution (``trust``: an :class:`optimizer.artifact.TrustPolicy`)."""
    from optimizer.artifact import load_artifact

    return load_artifact(path, program=program, trust=trust)


def save_result(result: CompileResult, path: str, **kwargs: Any) -> Any:
    """Save a compile's chosen variant as a JSON artifact (see :func:`optimizer.artifact.save_result`)."""
    from optimizer.artifact import save_result as _save

    return _save(result, path, **kwargs)
