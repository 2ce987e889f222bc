"""Run a sweep file: expand its cells, open the sweep's MLflow parent run, run the unfinished cells on an
executor with a live table, and write the report.

>>> run_sweep("experiments/sweeps/quickstart.yaml", workers=1)
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from optimizer.models.local import THREADS_ENV
from optimizer.sweep.cell import read_outcome, read_status, write_json
from optimizer.sweep.config import CELLS_FILE, CellSettings, SweepFile, load_sweep, run_order, select
from optimizer.sweep.executors import CellJob, run_local, run_ray
from optimizer.sweep.report import write_report

EXPERIMENT = "progopt-sweeps"


def output_folder(sweep: SweepFile) -> Path:
    """The sweep's results folder: its ``output``, else ``out/sweeps/<name>`` under the working directory."""
    return Path(sweep.output) if sweep.output else Path("out") / "sweeps" / sweep.name


def _parent_run(tracking_uri: str, sweep: SweepFile, cells: Sequence[CellSettings]) -> str:
    """The sweep's MLflow parent run: reopened by its name tag when the sweep is rerun."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    found = client.search_runs([experiment_id], f"tags.`progopt.sweep` = '{sweep.name}' and "
                               "tags.`progopt.kind` = 'sweep'", max_results=1)
    if found:
        client.update_run(found[0].info.run_id, status="RUNNING")
        return found[0].info.run_id
    run = client.create_run(experiment_id, run_name=f"sweep {sweep.name}",
                            tags={"progopt.kind": "sweep", "progopt.sweep": sweep.name})
    client.log_param(run.info.run_id, "cells", len(cells))
    return run.info.run_id


def live_table(output: Path, cells: Sequence[CellSettings], started: float | None = None) -> Table:
    """Each cell's state (``stale``: its process is gone, see :func:`~optimizer.sweep.cell.read_status`), LM
    calls, validation/test score and elapsed time; totals, and with the sweep's ``started`` time an ETA."""
    table = Table(title=f"sweep: {output}", show_lines=False)
    for column in ("cell", "program", "optimizer", "seed", "state", "LM calls", "val", "test", "elapsed s"):
        table.add_column(column)
    finished, calls = 0, 0
    for cell in cells:
        folder = output / "cells" / cell.cell_id()
        outcome = read_outcome(folder)
        if outcome is not None:
            finished += 1
            calls += outcome.compile_calls
            state, n, val = outcome.state, outcome.compile_calls, outcome.validation_score
            test = (outcome.test or {}).get("score")
            elapsed = outcome.compile_seconds
        else:
            status = read_status(folder)
            state, n, val, test = status.get("state", "pending"), status.get("calls", 0), None, None
            end = status.get("updated") if state == "stale" else time.time()  # a stale cell's clock stopped
            elapsed = end - status["started"] if "started" in status else None
            calls += n
        table.add_row(cell.cell_id(), cell.program.name, cell.label(), str(cell.seed), state, str(n),
                      "-" if val is None else f"{val:.3f}", "-" if test is None else f"{test:.3f}",
                      "-" if elapsed is None else f"{elapsed:.0f}")
    table.caption = f"{finished}/{len(cells)} cells finished, {calls} LM calls"
    if started is not None:
        remaining = len(cells) - finished
        eta = f"{(time.time() - started) / finished * remaining:.0f} s" if finished else "?"
        table.caption += f", elapsed {time.time() - started:.0f} s, ETA {eta}"
    return table


def run_sweep(path: str | Path, *, workers: int = 1, executor: str = "local", address: str | None = None,
              cpus_per_cell: float = 1.0, storage: str | None = None, tracking_uri: str | None = None,
              show_progress: bool = True, only: Sequence[str] = ()) -> Path:
    """Run every unfinished cell of the sweep file at ``path`` and write the report; returns the output folder.

    llama.cpp threads per cell: ``$PROGOPT_THREADS`` if set, else the cores divided among the cells at once.
    ``only``: ``KEY=V1,V2`` filters (:func:`~optimizer.sweep.config.select`) to run a piece of the sweep; the
    other cells' outcomes stay in the folder and in the report.
    ``storage``: an Optuna storage URL shared by every process and node (cell studies and the ledger; default:
    SQLite files in the output folder). ``tracking_uri``: MLflow (default ``sqlite:///mlflow.db``; ``none``)."""
    from optimizer.tracking.tracker import resolve_tracking_uri

    sweep, every_cell = load_sweep(path)
    cells = run_order(select(every_cell, only))
    output = output_folder(sweep).resolve()
    output.mkdir(parents=True, exist_ok=True)
    write_json(output / CELLS_FILE, [c.model_dump(mode="json") for c in every_cell])  # all: budget_from reads them
    uri = tracking_uri if tracking_uri == "none" else resolve_tracking_uri(tracking_uri)
    parent = _parent_run(uri, sweep, cells) if uri != "none" else None
    cores = os.cpu_count() or 1
    parallel = max(1, int(cores // cpus_per_cell)) if executor == "ray" else max(1, workers)
    threads = int(os.environ.get(THREADS_ENV) or max(1, cores // min(parallel, cores)))
    job = CellJob(output=output, project=Path.cwd().resolve(), storage=storage,
                  ledger=storage or f"sqlite:///{output / 'sweep.db'}", ledger_name=f"sweep-{sweep.name}",
                  tracking_uri=uri, parent_run_id=parent, threads=threads)
    started = time.time()
    console = Console(stderr=True)
    with Live(get_renderable=lambda: live_table(output, cells, started), console=console, refresh_per_second=1,
              transient=False) if show_progress else nullcontext() as live:
        def on_idle() -> None:
            if show_progress:
                live.refresh()

        if executor == "ray":
            run_ray(job, cells, address=address, cpus_per_cell=cpus_per_cell, on_idle=on_idle)
        else:
            run_local(job, cells, workers, on_idle=on_idle)
    paths = write_report(output, title=f"Sweep {sweep.name}")
    if parent is not None:
        from mlflow import MlflowClient

        client = MlflowClient(uri)
        for file in paths.values():
            if file.exists():
                client.log_artifact(parent, str(file))
        client.set_terminated(parent, "FINISHED")
    return output
