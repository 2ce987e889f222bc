"""The served form of a compiled program: an MLflow ``PythonModel`` built from code that loads the JSON
artifact (:func:`optimizer.artifact.load_artifact`): nothing is pickled, nothing is unpickled.

The program's fields come from the artifact's steps: its outputs are every step's output fields (those no
other step consumes are required), its inputs are the step inputs that no step produces.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from itertools import chain
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, DataType, Schema

ARTIFACT_KEY = "artifact"
# JSON Schema "type" -> MLflow column type; anything else (lists, objects) is served as JSON text.
COLUMN_TYPES = {"string": DataType.string, "integer": DataType.long, "number": DataType.double,
                "boolean": DataType.boolean}


def program_fields(doc: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """``(inputs, outputs)``: field name -> JSON Schema type, in step order, from an artifact document."""
    produced = {name: field["type"] for step in doc["steps"].values()
                for name, field in step["signature"]["outputs"].items()}
    inputs = {name: field["type"] for step in doc["steps"].values()
              for name, field in step["signature"]["inputs"].items() if name not in produced}
    return inputs, produced


def _column(name: str, json_type: dict[str, Any], required: bool = True) -> ColSpec:
    return ColSpec(COLUMN_TYPES.get(json_type.get("type", ""), DataType.string), name, required=required)


def signature(doc: dict[str, Any]) -> ModelSignature:
    """The MLflow signature of the artifact's program (inputs and outputs as columns)."""
    inputs, outputs = program_fields(doc)
    consumed = {name for step in doc["steps"].values() for name in step["signature"]["inputs"]}
    return ModelSignature(inputs=Schema([_column(n, t) for n, t in inputs.items()]),
                          outputs=Schema([_column(n, t, n not in consumed) for n, t in outputs.items()]))


def input_example(doc: dict[str, Any], examples: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any] | None:
    """The program inputs of the first of the artifact's demos, then ``examples``, holding them all (or None)."""
    inputs, _ = program_fields(doc)
    rows = chain((demo for step in doc["steps"].values() for demo in step["demos"]), examples)
    return next(({name: row[name] for name in inputs} for row in rows if set(inputs) <= set(row)), None)


def _plain(value: Any) -> Any:
    """A scalar as is; a list, dict or pydantic value as JSON text (the signature's string column)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, default=lambda o: o.model_dump() if hasattr(o, "model_dump") else str(o))


class CompiledProgramModel(mlflow.pyfunc.PythonModel):
    """Runs a compiled program on each input row. ``load_context`` loads the artifact logged under
    :data:`ARTIFACT_KEY`; ``predict`` takes a DataFrame (or records) of the program's inputs and returns one
    dict of outputs per row. Calls to one model are serialised by its pool lock."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from optimizer import runtime
        from optimizer.artifact import load_artifact, read_artifact

        runtime.configure()
        path = context.artifacts[ARTIFACT_KEY]
        self.program = load_artifact(path)
        self.inputs, self.outputs = program_fields(read_artifact(path))

    def predict(self, context: mlflow.pyfunc.PythonModelContext | None, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        rows = model_input.to_dict(orient="records") if isinstance(model_input, pd.DataFrame) else model_input
        return [self._predict_row(row) for row in rows]

    def _predict_row(self, row: dict[str, Any]) -> dict[str, Any]:
        missing = [name for name in self.inputs if name not in row]
        if missing:
            raise ValueError(f"missing input fields {missing}; the program takes {list(self.inputs)}")
        prediction = self.program(**{name: row[name] for name in self.inputs})
        return {name: _plain(prediction[name]) for name in self.outputs if name in prediction}
