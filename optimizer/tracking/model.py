"""Log a compiled-program artifact as an MLflow model: pyfunc flavor from code (``model_code.py``), the JSON
artifact as its only data, a signature and input example, optionally a registered model version.

>>> info = log_compiled_model("out/compiled.json", run_id=run_id, registered_model_name="sentiment")
>>> # mlflow models serve -m models:/sentiment/1 --env-manager local
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
from mlflow.models.model import ModelInfo

from optimizer.tracking.serving import ARTIFACT_KEY, input_example, signature

MODEL_CODE = Path(__file__).with_name("model_code.py")
MODEL_NAME = "model"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


@contextmanager
def using_tracking_uri(uri: str | None) -> Iterator[None]:
    """MLflow's model logging reads the global tracking URI: point it at ``uri`` for the block only.

    ``mlflow.set_tracking_uri`` also writes ``MLFLOW_TRACKING_URI`` into the environment, so both are put back
    exactly as they were: restoring only the URI would leave the variable set, and every later tracker of
    the process (which reads the variable) would write to this block's store."""
    if uri is None:
        yield
        return
    from mlflow.tracking._tracking_service import utils as tracking_uris  # the global's only reader

    previous, previous_env = tracking_uris._tracking_uri, os.environ.get(TRACKING_URI_ENV)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]  # None unsets it again
        if previous_env is None:
            os.environ.pop(TRACKING_URI_ENV, None)
        else:
            os.environ[TRACKING_URI_ENV] = previous_env


SERVING_PACKAGES = ("dspy", "optuna", "outlines", "llama-cpp-python", "progopt", "mlflow", "detect-secrets")


def requirements() -> list[str]:
    """Pinned pip requirements from the versions installed here, never from artifact strings (an artifact's
    provenance could carry ``"1.0\n--extra-index-url ..."``)."""
    pins = {}
    for name in SERVING_PACKAGES:
        try:
            pins[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def mlflow_environment() -> None:
    """MLflow's settings for progopt, applied when a tracker or model logger is made (never at import):
    no telemetry (read per event), and no two URL lines per run ended on a server (one pair per variant
    would bury the compile's output). A variable the user set is kept."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def log_compiled_model(artifact: str | Path, *, run_id: str, tracking_uri: str | None = None,
                       name: str = MODEL_NAME, registered_model_name: str | None = None,
                       examples: Sequence[Mapping[str, Any]] = ()) -> ModelInfo:
    """Log ``artifact`` (a compiled-program JSON file) as a pyfunc model of run ``run_id``.

    The model's code is ``model_code.py`` (MLflow models-from-code); it builds the program with
    :func:`optimizer.artifact.load_artifact` when served, so no Python object is pickled. The input example
    is the first of the artifact's demos, then ``examples``, holding every program input (MLflow runs it once
    to check the model serves). With ``registered_model_name`` a new version of that registered model is made."""
    from optimizer.artifact import read_artifact
    mlflow_environment()
    doc = read_artifact(artifact)
    # The run must be active for the model to join its experiment; a caller's own active run stays the parent.
    with using_tracking_uri(tracking_uri), mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
        return mlflow.pyfunc.log_model(name=name, python_model=str(MODEL_CODE), artifacts={ARTIFACT_KEY: str(artifact)},
                                       signature=signature(doc), input_example=input_example(doc, examples),
                                       pip_requirements=requirements(),
                                       registered_model_name=registered_model_name)
