"""MLflow tracking of compiles: one parent run per study, one child run per evaluated variant, the chosen
variant as a pyfunc model built from code (no pickle), secrets scrubbed before anything is logged.

>>> result = compile(Sentiment(), ..., observer=MlflowTracker(experiment="sentiment"))
>>> # mlflow ui --backend-store-uri sqlite:///mlflow.db
"""

from optimizer.tracking.model import log_compiled_model
from optimizer.tracking.tracker import DEFAULT_EXPERIMENT, MlflowTracker, resolve_tracking_uri

__all__ = ["DEFAULT_EXPERIMENT", "MlflowTracker", "log_compiled_model", "resolve_tracking_uri"]
