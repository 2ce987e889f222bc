"""One cell of a sweep: a progopt compile or a DSPy optimizer run, then the chosen program on the test split.

Lifecycle of a cell folder ``<sweep output>/cells/<cell id>/``: ``settings.json`` (written first),
``status.json`` (waiting for a matched budget, or running: LM calls so far, refreshed while it runs), the
progopt study (``study.db``, or the shared ``--storage`` under the study name ``cell-<id>``),
``artifact.json``/``result.json``/``report.md`` and ``lm-cache/`` (the cell's own response cache, see
:func:`_cache_for`) for progopt cells, ``dspy_program.json`` for DSPy cells, ``clock.json`` (the compile's
wall and LM seconds over all its runs), and last, atomically, ``outcome.json``: a cell is finished exactly
when that file exists.
While the cell runs, ``calls.jsonl`` journals every model output (:mod:`optimizer.models.journal`); it is
deleted when the cell finishes. A rerun skips finished cells; an interrupted cell starts again with its
journal in front of the models, so the calls it already paid for are replayed (counted, not paid again) and
it goes on where it stopped: a progopt cell also resumes from its study (finished trials kept); a DSPy cell's
seeded optimizer makes the same requests in the same order. ``clock.json`` adds the earlier runs' seconds
while the journal they wrote is there. Committing an unfinished cell's folder (journal and clock included)
lets a fresh clone finish it: how a cell longer than one working session runs in pieces.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, field_validator

from optimizer.outputs import write_atomic
from optimizer.sweep.config import CellSettings, stored_settings

if TYPE_CHECKING:
    from optimizer.tasks import TaskSetup

OUTCOME, STATUS, SETTINGS, RUNS = "outcome.json", "status.json", "settings.json", "runs.jsonl"
LM_CACHE = "lm-cache"  # a progopt cell's own DSPy response cache (see _cache_for)
JOURNAL = "calls.jsonl"  # the model outputs of an unfinished cell (optimizer.models.journal)


class CellOutcome(BaseModel):
    """What a finished cell reports: the chosen program's test summary and per-example scores, the compile's
    LM calls and wall time."""

    cell_id: str
    group: str
    label: str
    settings: CellSettings
    state: str  # "done" or "failed"
    error: str | None = None
    test: dict[str, Any] | None = None
    test_scores: list[float] = []
    validation_score: float | None = None
    compile_calls: int = 0
    compile_seconds: float = 0.0
    compile_lm_seconds: float | None = None  # wall seconds inside LM calls during the compile (None: not measured)
    chosen: str | None = None
    run_id: str | None = None  # the progopt compile's MLflow run

    @field_validator("settings", mode="before")
    @classmethod
    def _stored(cls, value: Any) -> Any:
        return stored_settings(value)


def write_json(path: Path, value: Any) -> None:
    """Atomic write: a reader sees the old file or the new one, never a part."""
    write_atomic(path, json.dumps(value, indent=1, default=str))


def read_outcome(folder: Path) -> CellOutcome | None:
    path = folder / OUTCOME
    return CellOutcome.model_validate_json(path.read_text(encoding="utf-8")) if path.exists() else None


def cell_task(settings: CellSettings) -> TaskSetup:
    """The task a cell compiles (program, metric, data splits, model pool), resolved as ``progopt compile``
    resolves its options; also what benchmark scripts use to rebuild a cell's task."""
    from optimizer.tasks import resolve_task

    p = settings.program
    args = argparse.Namespace(program=p.ref, metric=p.metric, inputs=list(p.inputs) if p.inputs else None,
                              map=list(p.map), models=list(settings.models), api_base=None)
    return resolve_task(args)


def _status(folder: Path, started: float, calls: int, state: str = "running") -> None:
    write_json(folder / STATUS, {"state": state, "started": started, "calls": calls, "pid": os.getpid(),
                                 "host": socket.gethostname(), "updated": time.time()})


def read_status(folder: Path) -> dict[str, Any]:
    """A cell's ``status.json`` as a reader should take it (``{}``: never started). A ``running`` or ``waiting``
    cell whose process is gone from this host reads ``stale``: it was killed, and the next run of the sweep takes
    it again (a file written before ``host`` was recorded counts as this host's). A cell on another host, or
    whose pid was reused by another process, reads as written."""
    path = folder / STATUS
    if not path.exists():
        return {}
    status = json.loads(path.read_text(encoding="utf-8"))
    here = status.get("host", socket.gethostname()) == socket.gethostname()
    if status.get("state") in ("running", "waiting") and here and not _alive(status.get("pid")):
        status["state"] = "stale"
    return status


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True  # unknown: trust the file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def run_cell(settings: CellSettings, folder: Path, *, storage: str | None = None, tracking_uri: str | None = None,
             experiment: str = "progopt-sweeps", parent_run_id: str | None = None, worker: str = "local"
             ) -> CellOutcome:
    """Run one cell into ``folder`` (skipped if already finished) and return its outcome. Never raises for a
    failure of the cell's own work: that is a ``failed`` outcome with the error (interrupts propagate).
    Each start is appended to ``runs.jsonl`` (pid, ``worker``, time): a resumed cell has two lines. A cell
    with ``budget_from`` is ``waiting`` in ``status.json`` until its budget is known (:func:`matched_budget`);
    its compile time starts after that wait."""
    from optimizer import runtime
    from optimizer.accounting import EngineMeter, metered

    done = read_outcome(folder)
    if done is not None:
        return done
    runtime.configure()
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / SETTINGS, settings.model_dump(mode="json"))
    started = time.time()
    with open(folder / RUNS, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"pid": os.getpid(), "worker": worker, "started": started,
                             "threads": os.environ.get("PROGOPT_THREADS")}) + "\n")
    _status(folder, started, 0)
    base = {"cell_id": settings.cell_id(), "group": settings.group(), "label": settings.label(),
            "settings": settings}
    try:
        budget = settings.budget
        if settings.budget_from:  # the wait for the DSPy cells is not part of this cell's compile time
            _status(folder, started, 0, "waiting")
            budget = matched_budget(settings, folder.parent)
            started = time.time()
            _status(folder, started, 0)
        task = cell_task(settings)
        task.pool = task.pool.journaled(folder / JOURNAL)
        p = settings.program
        train = task.load(p.train or "train", settings.train_limit)
        val = task.load(p.val or "val", settings.val_limit)
        test = task.load(p.test or "test", settings.test_limit)
        runner = _progopt if settings.optimizer == "progopt" else _dspy
        with metered(EngineMeter(hooks=(_Refresh(folder, started),))), _cache_for(settings, folder):
            fields = runner(settings, folder, task, train, val, test, storage=storage, tracking_uri=tracking_uri,
                            experiment=experiment, parent_run_id=parent_run_id, budget=budget)
        outcome = CellOutcome(**base, state="done", **fields)
    except Exception as exc:  # noqa: BLE001 - a failed cell is a recorded outcome; the sweep goes on
        from optimizer.secrets import SecretDetector

        outcome = CellOutcome(**base, state="failed", error=SecretDetector().mask(f"{type(exc).__name__}: {exc}"),
                              compile_seconds=time.time() - started)
    if tracking_uri != "none":
        _log_run(outcome, tracking_uri, experiment, parent_run_id)
    write_json(folder / OUTCOME, outcome.model_dump(mode="json"))
    (folder / JOURNAL).unlink(missing_ok=True)  # a checkpoint; the outcome is the result
    _status(folder, started, outcome.compile_calls, outcome.state)
    return outcome


@contextmanager
def _cache_for(settings: CellSettings, folder: Path) -> Iterator[None]:
    """DSPy's response cache while the cell runs. A progopt budget counts the calls that reach a model, so a
    cache shared with other cells would serve a progopt cell their calls for free (the 0.5x cell of a task
    replays its 1x cell's first trials); each progopt cell gets its own (``folder/lm-cache``, kept, so a
    resumed cell reuses the calls it already paid for). DSPy cells count every request, cached or not, and
    keep the process's shared cache, which is restored afterwards."""
    from optimizer import runtime

    if settings.optimizer != "progopt":
        yield
        return
    shared = runtime.configure()
    runtime.configure(folder / LM_CACHE)
    try:
        yield
    finally:
        runtime.configure(shared)


def _log_run(outcome: CellOutcome, tracking_uri: str | None, experiment: str, parent_run_id: str | None) -> None:
    """The cell's MLflow run, nested under the sweep's: the compile's own run for a progopt cell (its variants
    are nested under it), a new run for a DSPy cell; tagged with the settings, with the test metrics."""
    from mlflow import MlflowClient

    from optimizer.tracking.model import mlflow_environment
    from optimizer.tracking.tracker import resolve_tracking_uri

    mlflow_environment()
    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    run_id = outcome.run_id
    if run_id is None:
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        run_id = client.create_run(experiment_id, run_name=f"cell {outcome.label}",
                                   tags=_tags(outcome.settings, parent_run_id)).info.run_id
    metrics = {f"test_{k}": float(v) for k, v in (outcome.test or {}).items() if isinstance(v, int | float)}
    metrics.update(compile_calls=outcome.compile_calls, compile_seconds=outcome.compile_seconds)
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
    client.set_tag(run_id, "progopt.cell_state", outcome.state)
    client.set_terminated(run_id, "FINISHED" if outcome.state == "done" else "FAILED")


def _test_fields(program: Any, test: list, metric: Any, **context: Any) -> dict[str, Any]:
    from optimizer.evaluate import evaluate

    evaluation = evaluate(program, test, metric, description="test", show_progress=False, **context)
    summary = evaluation.summary().model_dump(exclude={"by_model", "by_step"})
    return {"test": summary, "test_scores": [r.score for r in evaluation.results]}


def _tags(settings: CellSettings, parent_run_id: str | None) -> dict[str, str]:
    tags = {"progopt.cell": settings.cell_id(), "progopt.cell_label": settings.label(),
            **{f"cell.{k}": json.dumps(v) for k, v in settings.model_dump(mode="json").items()}}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    return tags


def _progopt(settings: CellSettings, folder: Path, task: Any, train: list, val: list, test: list, *,
             storage: str | None, tracking_uri: str | None, experiment: str, parent_run_id: str | None,
             budget: int) -> dict[str, Any]:
    import dspy

    from optimizer.artifact import load_artifact, save_result
    from optimizer.results import markdown_report
    from optimizer.search.compile import compile
    from optimizer.search.settings import Budget, SearchSettings, SpaceSettings
    from optimizer.sweep.clock import cell_clock

    observer = None
    if tracking_uri != "none":
        from optimizer.tracking import MlflowTracker

        observer = MlflowTracker(tracking_uri=tracking_uri, experiment=experiment, log_model=False,
                                 tags=_tags(settings, parent_run_id))
    clock = cell_clock(folder)
    with dspy.context(callbacks=[*dspy.settings.callbacks, clock]):  # LM seconds; the compile counts calls
        result = compile(task.program_class(), trainset=train, valset=val, metric=task.metric, models=task.pool,
                         budget=Budget(calls=budget, seconds=settings.budget_seconds),
                         search=SearchSettings(sampler=settings.search, seed=settings.seed,
                                               minibatch=settings.minibatch, final_top=settings.final_top,
                                               final_share=settings.final_share,
                                               validation=settings.validation or (
                                                   None if settings.open_space() else len(val))),
                         space=SpaceSettings(formats=settings.formats, strategies=settings.strategies,
                                             demo_draws=settings.demo_draws, retrieval_sizes=settings.retrieval_sizes,
                                             label_words=settings.label_words),
                         storage=storage or f"sqlite:///{folder / 'study.db'}",
                         study_name=f"cell-{settings.cell_id()}", program_ref=settings.program.ref,
                         observer=observer, show_progress=False)
    totals = clock.finish()
    artifact = save_result(result, folder / "artifact.json", program=task.program_class(), pool=task.pool)
    write_json(folder / "result.json", json.loads(result.model_dump_json()))
    (folder / "report.md").write_text(markdown_report(result), encoding="utf-8")
    chosen = load_artifact(artifact, program=task.program_class)
    full = result.best_records().get(result.chosen)
    return {**_test_fields(chosen, test, task.metric), "compile_calls": int(result.spent["calls"]),
            "compile_seconds": totals["seconds"], "compile_lm_seconds": totals["lm_seconds"],
            "chosen": result.chosen,
            "run_id": result.tracking_run_id,
            "validation_score": full.summary.score if full else None}


def budget_peers(settings: CellSettings, cells: Path) -> list[CellSettings]:
    """The cells whose compile calls decide ``settings``' budget (``budget_from``): the DSPy optimizers of the
    same program and seed in this sweep (none without ``budget_from``). Per seed, so a sweep runs in pieces by
    seed (a piece never waits on seeds another piece will run) and each progopt cell matches the DSPy cells of
    its own seed."""
    from optimizer.sweep.config import load_cells_settings

    if not settings.budget_from:
        return []
    return [s for s in load_cells_settings(cells.parent) if s.program == settings.program
            and s.seed == settings.seed and s.optimizer not in ("progopt", "ZeroShot")]


def waiting_on(settings: CellSettings, cells: Path) -> list[str]:
    """The ids of the unfinished cells ``settings`` must wait for before it starts (its budget peers)."""
    return [p.cell_id() for p in budget_peers(settings, cells) if read_outcome(cells / p.cell_id()) is None]


def matched_budget(settings: CellSettings, cells: Path, wait_s: float = 10.0) -> int:
    """The LM-call budget ``budget_from`` asks for: the most compile calls any of :func:`budget_peers` used,
    times ``budget_fraction``. Waits until they are finished (the executors start a cell only after its
    peers, but a peer may be running in another process); refuses when the sweep has none."""
    peers = budget_peers(settings, cells)
    if not peers:
        raise ValueError(f"budget_from: the sweep runs no DSPy optimizer on {settings.program.ref} "
                         f"with seed {settings.seed}")
    while waiting_on(settings, cells):
        time.sleep(wait_s)
    largest = max(outcome.compile_calls for p in peers if (outcome := read_outcome(cells / p.cell_id())))
    return max(1, round(largest * settings.budget_fraction))


class _Refresh:
    """Meter hooks of a cell: refresh ``status.json`` at most every 2 seconds (the sweep's live table)."""

    def __init__(self, folder: Path, started: float):
        self.folder, self.started, self.last = folder, started, 0.0

    def before_call(self, meter: Any) -> None:
        """Nothing: a cell's own meter has no limit (a compile's budget is its session's meter)."""

    def counted(self, meter: Any) -> None:
        if time.time() - self.last > 2:
            self.last = time.time()
            _status(self.folder, self.started, meter.calls)


def _dspy(settings: CellSettings, folder: Path, task: Any, train: list, val: list, test: list, **context: Any
          ) -> dict[str, Any]:
    from optimizer.sweep.baselines import dspy_adapter, run_dspy_optimizer
    from optimizer.sweep.clock import cell_clock

    clock = cell_clock(folder, cache=JOURNAL, prior=(folder / JOURNAL).exists())
    compiled = run_dspy_optimizer(settings, task, train, val, folder, clock)
    totals = clock.finish()
    lm, adapter = task.pool.lm(settings.models[0]), dspy_adapter(settings)
    return {**_test_fields(compiled, test, task.metric, lm=lm, adapter=adapter), "compile_calls": clock.calls,
            "compile_seconds": totals["seconds"], "compile_lm_seconds": totals["lm_seconds"]}
