"""MLflow tracking of compiles: one parent run per study, one child run per evaluated variant, the chosen
variant as a pyfunc model built from code (no pickle), secrets scrubbed before anything is logged.

>>> result = compile(Sentiment(), ..., observer=MlflowTracker(experiment="sentiment"))
>>> # mlflow ui --backend-store-uri sqlite:///mlflow.db
"""

import os

# Before MLflow is first imported (any submodule import runs this file first).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# MLflow prints two URL lines per run ended on a server: one pair per variant would bury the compile's output.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

from optimizer.tracking.model import log_compiled_model  # noqa: E402
from optimizer.tracking.tracker import DEFAULT_EXPERIMENT, MlflowTracker, resolve_tracking_uri  # noqa: E402

__all__ = ["DEFAULT_EXPERIMENT", "MlflowTracker", "log_compiled_model", "resolve_tracking_uri"]
