"""MLflow models-from-code entry point: MLflow runs this file to build the served model, so the model is
code plus the JSON artifact, never a pickle (see :mod:`optimizer.tracking.model`)."""

import mlflow

from optimizer.tracking.serving import CompiledProgramModel

mlflow.models.set_model(CompiledProgramModel())
