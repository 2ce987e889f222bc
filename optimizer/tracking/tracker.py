"""``MlflowTracker``: a compile recorded in MLflow, as one more consumer of the trial records.

One parent run per study (tag ``progopt.study_name``; a resumed compile reopens it), one nested child run
per evaluated variant record (tag ``progopt.stage``), with every step's choices as params. On finish the
parent gets the baselines, the Pareto front (JSON, CSV, PNG), the spent budget and the chosen variant as a
pyfunc model. Every param, tag and text artifact passes through the :class:`~optimizer.secrets.SecretDetector` first.

>>> tracker = MlflowTracker(experiment="sentiment")  # sqlite:///mlflow.db in the working directory
>>> result = compile(Sentiment(), trainset=train, valset=val, metric=metric, budget=budget, observer=tracker)
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models.model import ModelInfo

from optimizer.models.pool import ModelPool
from optimizer.records import CompileResult, TrialRecord
from optimizer.secrets import SecretDetector
from optimizer.tracking import report

logger = logging.getLogger(__name__)

DEFAULT_DB = "mlflow.db"
DEFAULT_EXPERIMENT = "progopt"
KIND, STUDY, STAGE, VARIANT = "progopt.kind", "progopt.study_name", "progopt.stage", "progopt.variant_key"
ON_FRONT, CHOSEN, ERROR, MODEL = "progopt.on_front", "progopt.chosen", "progopt.error", "progopt.model"
CHOSEN_VARIANT = "progopt.chosen_variant"
CHOICE_NOTE, SPACE_NOTE = "progopt.choice", "progopt.space"  # the compile's estimate and ties; its space and why
PARENT = "mlflow.parentRunId"
MAX_TAG_LENGTH = 5000


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """``tracking_uri``, else ``MLFLOW_TRACKING_URI``, else a SQLite file ``mlflow.db`` in the working directory."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / DEFAULT_DB}"


def _quoted(value: str) -> str:
    """A string literal for an MLflow search filter."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class MlflowTracker:
    """A :class:`~optimizer.records.CompileObserver` writing MLflow runs.

    Lifecycle: ``start`` (find or create the study's parent run; end children a killed process left RUNNING
    as KILLED) -> ``log_trial`` per evaluated variant (a finished child run) -> ``finish`` (front, baselines,
    model; parent FINISHED) or ``fail`` (parent and open children FAILED, or KILLED on KeyboardInterrupt).
    One process per study at a time; not thread-safe.

    ``pool`` gives the chosen steps' model configs for the artifact (default: the compile's pool, as the
    result records it); ``log_model=False`` skips the artifact and model; ``tags`` are added to the parent run."""

    def __init__(self, tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT, *,
                 registered_model_name: str | None = None, log_model: bool = True, pool: ModelPool | None = None,
                 tags: Mapping[str, str] | None = None):
        from optimizer.tracking.model import mlflow_environment

        mlflow_environment()
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.experiment = experiment
        self.registered_model_name, self.log_model, self.pool = registered_model_name, log_model, pool
        self.tags = dict(tags or {})
        self.client = MlflowClient(self.tracking_uri)
        self.secrets = SecretDetector()
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.study_name = ""
        self.model_info: ModelInfo | None = None

    # -- CompileObserver ---------------------------------------------------------------------------------
    def start(self, *, study_name: str, program: str, seed: int, budget: dict[str, Any],
              datasets: dict[str, str]) -> str:
        """The parent run id of ``study_name`` (reopened if it exists, else created)."""
        self.secrets = SecretDetector()  # sees keys set since the tracker was built
        self.study_name, self.experiment_id = study_name, self._experiment_id()
        parent = self._find_parent()
        if parent is None:
            run = self.client.create_run(self.experiment_id, run_name=self._text(study_name),
                                         tags=self._tags({**self.tags, KIND: "compile", STUDY: study_name}))
            self.run_id = run.info.run_id
            sessions = 1
        else:
            self.run_id = parent.info.run_id
            self._end_children("KILLED", only_running=True)
            self.client.update_run(self.run_id, status="RUNNING")
            sessions = int(parent.data.tags.get("progopt.sessions", "1")) + 1
        self.client.set_tag(self.run_id, "progopt.sessions", str(sessions))
        params = {"program": program, "seed": seed, **{f"budget.{k}": v for k, v in budget.items()},
                  **{f"dataset.{split}": h for split, h in datasets.items()}}
        self._log_params(params, parent)
        logger.info("compile %s is MLflow run %s (session %d) at %s", study_name, self.run_id, sessions,
                    self.tracking_uri)
        return self.run_id

    def log_trial(self, record: TrialRecord) -> None:
        """One finished child run: the variant's choices as params, its evaluation as metrics."""
        run_id = self._require_run()
        tags = {KIND: "variant", PARENT: run_id, STUDY: self.study_name, STAGE: record.stage,
                VARIANT: record.variant_key}
        if record.label:
            tags["progopt.label"] = record.label
            tags["progopt.baseline"] = str(record.label.startswith("baseline")).lower()
        name = f"{record.stage} {record.label or record.variant_key}"
        child = self.client.create_run(self._experiment(), run_name=self._text(name), tags=self._tags(tags))
        child_id = child.info.run_id
        params = {**record.variant.params(), "variant_key": record.variant_key, "trial_number": record.number,
                  "examples": record.examples}
        now = int(time.time() * 1000)
        self.client.log_batch(child_id, metrics=[Metric(k, v, now, 0) for k, v in report.metrics(record).items()],
                              params=[Param(k, self._text(str(v))) for k, v in params.items()])
        self._log_json(child_id, report.variant_doc(record), "variant.json")
        self._log_json(child_id, {"stage": record.stage, "summary": record.summary.model_dump()}, "evaluation.json")
        self.client.set_terminated(child_id, "FINISHED")

    def finish(self, result: CompileResult) -> None:
        """Baselines, front and spending on the parent, with the choice and space notes as tags; front and chosen
        children tagged; the model; FINISHED."""
        run_id = self._require_run()
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in report.parent_metrics(result).items()],
                              tags=[RunTag(CHOSEN_VARIANT, result.chosen),
                                    *(RunTag(key, self._text(text)[:MAX_TAG_LENGTH]) for key, text in
                                      ((CHOICE_NOTE, result.choice_note), (SPACE_NOTE, result.space_note)) if text)])
        rows = report.front_rows(result)
        self._log_json(run_id, rows, "front.json")
        self._log_text(run_id, report.csv_text(rows), "front.csv")
        self._log_json(run_id, result.model_dump(mode="json"), "compile_result.json")
        with tempfile.TemporaryDirectory() as tmp:
            from optimizer.results import plot_front

            self.client.log_artifact(run_id, str(plot_front(result, Path(tmp) / "front.png")))
        self._tag_children(set(result.front), result.chosen)
        if self.log_model:
            self._log_chosen_model(result)
        self.client.set_terminated(run_id, "FINISHED")

    def fail(self, error: BaseException) -> None:
        """End the parent and any open child as KILLED (KeyboardInterrupt) or FAILED, with the error as a tag."""
        if self.run_id is None:
            return
        status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        try:
            self.client.set_tag(self.run_id, ERROR, self._text(f"{type(error).__name__}: {error}")[:MAX_TAG_LENGTH])
            self._end_children(status, only_running=True)
            self.client.set_terminated(self.run_id, status)
        except Exception as exc:  # noqa: BLE001 - the compile's own error is the one to raise
            logger.warning("could not mark MLflow run %s %s: %s", self.run_id, status,
                           self._text(f"{type(exc).__name__}: {exc}"))

    # -- helpers -----------------------------------------------------------------------------------------
    def _text(self, text: str) -> str:
        return self.secrets.mask(text)

    def _tags(self, tags: Mapping[str, Any]) -> dict[str, str]:
        return {self._text(k): self._text(str(v))[:MAX_TAG_LENGTH] for k, v in tags.items()}

    def _log_text(self, run_id: str, text: str, path: str) -> None:
        self.client.log_text(run_id, self._text(text), path)

    def _log_json(self, run_id: str, value: Any, path: str) -> None:
        self._log_text(run_id, json.dumps(self.secrets.mask_value(value), indent=1, default=str), path)

    def _require_run(self) -> str:
        if self.run_id is None:
            raise RuntimeError("MlflowTracker.start() was not called")
        return self.run_id

    def _experiment(self) -> str:
        if self.experiment_id is None:
            raise RuntimeError("MlflowTracker.start() was not called")
        return self.experiment_id

    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is None:
            return self.client.create_experiment(self.experiment)
        if found.lifecycle_stage != "active":
            raise ValueError(f"MLflow experiment {self.experiment!r} is deleted: restore it or choose another name")
        return found.experiment_id

    def _find_parent(self) -> Run | None:
        runs = self.client.search_runs([self._experiment()], max_results=1, order_by=["attributes.start_time DESC"],
                                       filter_string=f"tags.`{KIND}` = 'compile' and "
                                                     f"tags.`{STUDY}` = {_quoted(self.study_name)}")
        return runs[0] if runs else None

    def children(self) -> list[Run]:
        """Every child run of the current parent (all sessions)."""
        run_id, out, token = self._require_run(), [], None
        while True:
            page = self.client.search_runs([self._experiment()], filter_string=f"tags.`{PARENT}` = {_quoted(run_id)}",
                                           max_results=1000, page_token=token)
            out.extend(page)
            token = page.token
            if not token:
                return out

    def _end_children(self, status: str, *, only_running: bool) -> None:
        for child in self.children():
            if not only_running or child.info.status == RunStatus.to_string(RunStatus.RUNNING):
                self.client.set_terminated(child.info.run_id, status)

    def _log_params(self, params: Mapping[str, Any], parent: Run | None) -> None:
        """Params are immutable in MLflow: a resumed compile logs new ones and records changed values as tags."""
        logged = parent.data.params if parent else {}
        values = {k: self._text(str(v)) for k, v in params.items()}
        new = [Param(k, v) for k, v in values.items() if k not in logged]
        changed = [RunTag(f"progopt.resumed.{k}", v) for k, v in values.items() if k in logged and logged[k] != v]
        self.client.log_batch(self._require_run(), params=new, tags=changed)

    def _tag_children(self, front: set[str], chosen: str) -> None:
        """``progopt.on_front`` / ``progopt.chosen`` on every child, true or false (a resume can change them)."""
        for child in self.children():
            key = child.data.tags.get(VARIANT)
            wanted = {ON_FRONT: str(key in front).lower(), CHOSEN: str(key == chosen).lower()}
            if any(child.data.tags.get(tag) != value for tag, value in wanted.items()):
                self.client.log_batch(child.info.run_id, tags=[RunTag(t, v) for t, v in wanted.items()])

    def _log_chosen_model(self, result: CompileResult) -> None:
        """The chosen variant as a JSON artifact and a pyfunc model. A refusal or logging error becomes the
        ``progopt.model`` tag and a warning: the compile's result is still returned."""
        try:
            from optimizer.artifact import ArtifactError
        except ImportError:
            self.client.set_tag(self._require_run(), MODEL, "skipped: optimizer.artifact is not available")
            return
        run_id = self._require_run()
        try:
            self.model_info = self._save_and_log_model(result)
        except (ArtifactError, ImportError, KeyError, MlflowException, OSError) as exc:
            message = self._text(f"not logged: {type(exc).__name__}: {exc}")[:MAX_TAG_LENGTH]
            logger.warning("chosen variant %s %s", result.chosen, message)
            self.client.set_tag(run_id, MODEL, message)
            return
        self.client.set_tag(run_id, MODEL, self.model_info.model_uri)

    def _save_and_log_model(self, result: CompileResult) -> ModelInfo:
        from optimizer import refs
        from optimizer.artifact import ArtifactSecretError, save_result
        from optimizer.tracking.model import log_compiled_model

        run_id = self._require_run()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "compiled.json"
            save_result(result, path, program=refs.resolve(result.program)(),
                        pool=self.pool or report.registered_pool(result))
            if self.secrets.contains(path.read_text(encoding="utf-8")):
                raise ArtifactSecretError(path, "$", "holds key-shaped text or a value under a secret-named key")
            self.client.log_artifact(run_id, str(path))
            demos = [d for step in result.space.steps.values() for s in step.demo_sets.values() for d in s
                     if not self.secrets.contains(json.dumps(d))]  # the input example is logged as is
            return log_compiled_model(path, run_id=run_id, tracking_uri=self.tracking_uri,
                                      registered_model_name=self.registered_model_name, examples=demos)
