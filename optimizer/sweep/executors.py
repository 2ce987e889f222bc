"""Where cells run. Nothing here schedules by hand: claims go through an Optuna study, distribution through Ray.

- **Local** (``--workers N``): N processes (or this one, for N = 1) each loop ``study.ask()`` (under a lock
  file: SQLite has no row locks, and two processes once popped the same trial), the cell under the trial's
  heartbeat, ``study.tell``, on the sweep's *ledger* study, in which every unfinished cell is an enqueued
  trial carrying its id. Optuna pops each waiting trial exactly once (across ``progopt sweep`` processes
  sharing a PostgreSQL ``--storage`` by its row lock); its heartbeat fails the trial of a killed process
  after a grace period and ``RetryHeartbeatStaleTrialCallback`` re-enqueues it, so a rerun or another worker
  picks it up and the cell resumes from its own study. A cell that never started gives way to an interrupted
  one waiting behind it (a retry is enqueued after the cells already waiting, and resumed cells would
  otherwise wait for them all). Should two trials ever carry one cell (two processes
  enqueueing at once), the one with the lowest number runs it and the others are pruned. A cell is finished
  when its ``outcome.json`` exists, whatever the ledger says, so a finished cell is never run again.
  A cell that must wait for others (``budget_from``: its budget is their largest call count) and finds them
  unfinished goes back to the end of the queue instead of holding its worker (two workers once both held
  such cells while the cells they waited for sat in the queue). A worker exits when the sweep process that
  started it is gone (killed workers used to run on orphaned); its cell resumes on the next run.
- **Ray** (``--executor ray``): each unfinished cell is a Ray task (``num_cpus`` each, retried if its node
  dies); the stable cell id makes a retried task resume instead of restart. A ``budget_from`` cell's task
  takes its peers' tasks as arguments, so Ray starts it only after them.

llama.cpp threads are split so that workers x threads never exceeds the cores (oversubscribed llama.cpp
threads spin and made calls up to 40x slower here).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

from optimizer.search.storage import ask, heartbeat, open_storage
from optimizer.sweep.cell import RUNS, read_outcome, run_cell, waiting_on
from optimizer.sweep.config import CellSettings

if TYPE_CHECKING:
    import optuna
    from optuna.storages import RDBStorage

HEARTBEAT_S = 2
GRACE_S = 10
IDLE_WAIT_S = 2
PARENT_POLL_S = 1
DEFER_WAIT_S = 5  # after putting back a cell that waits for others (budget_from), before the next claim


@dataclass(frozen=True)
class CellJob:
    """What a worker needs to run cells: picklable, sent to worker processes and Ray tasks."""

    output: Path
    project: Path
    storage: str | None
    ledger: str
    ledger_name: str
    tracking_uri: str | None
    parent_run_id: str | None
    threads: int

    def folder(self, cell_id: str) -> Path:
        return self.output / "cells" / cell_id


def ledger_storage(url: str) -> RDBStorage:
    """The ledger's Optuna storage: :func:`~optimizer.search.storage.open_storage`'s heartbeats and retries of
    the trials of dead processes, with the ledger's own grace period."""
    return open_storage(url, heartbeat_s=HEARTBEAT_S, grace_s=GRACE_S)


def enqueue(job: CellJob, cells: Sequence[CellSettings], study: optuna.Study | None = None) -> None:
    """Put every unfinished cell that has no live trial on the ledger (idempotent; see the module docstring).
    Pass the caller's loaded ``study`` when polling: its cached storage then reads only new and unfinished
    trials, where a fresh one reads the whole ledger (every deferred claim adds a trial to it)."""
    import optuna
    from optuna.trial import TrialState

    if study is None:
        study = optuna.create_study(study_name=job.ledger_name, storage=ledger_storage(job.ledger),
                                    load_if_exists=True)
    live = {t.user_attrs.get("cell") for t in study.get_trials(
        deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))}
    for cell in cells:
        if cell.cell_id() not in live and read_outcome(job.folder(cell.cell_id())) is None:
            study.enqueue_trial({}, user_attrs={"cell": cell.cell_id()})


def work(job: CellJob, cells: dict[str, CellSettings], parent: int) -> None:
    """A worker process: its share of the cores, the project as working directory, then :func:`claim_and_run`;
    it exits when ``parent``, the sweep process that started it, is gone (:func:`exit_with_parent`)."""
    exit_with_parent(parent)
    os.environ["PROGOPT_THREADS"] = str(job.threads)
    os.chdir(job.project)
    claim_and_run(job, cells)


def claim_and_run(job: CellJob, cells: dict[str, CellSettings]) -> None:
    """Claim and run cells from the ledger until every cell of ``cells`` is finished."""
    import warnings

    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=job.ledger_name, storage=ledger_storage(job.ledger))

    def objective(trial: optuna.Trial) -> float:
        cell = trial.user_attrs.get("cell")
        if cell is None or cell not in cells:
            raise optuna.TrialPruned("no cell was waiting")
        rivals = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
        if any(t.user_attrs.get("cell") == cell and t.number < trial.number for t in rivals):
            raise optuna.TrialPruned(f"cell {cell} is claimed by an earlier trial")
        if not _started(job.folder(cell)) and any(
                _resumable(job, cells[c]) for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                if (c := t.user_attrs.get("cell")) in cells):  # an interrupted cell resumes before new ones start
            study.enqueue_trial({}, user_attrs={"cell": cell})
            raise optuna.TrialPruned(f"cell {cell} waits for the interrupted cells to resume")
        if waiting_on(cells[cell], job.output / "cells"):  # holding this worker could starve the cells it waits for
            study.enqueue_trial({}, user_attrs={"cell": cell})  # so it goes to the back of the queue
            time.sleep(DEFER_WAIT_S)
            raise optuna.TrialPruned(f"cell {cell} waits for the cells that decide its budget")
        outcome = run_cell(cells[cell], job.folder(cell), storage=job.storage, tracking_uri=job.tracking_uri,
                           parent_run_id=job.parent_run_id)
        return (outcome.test or {}).get("score", -1.0)

    while any(read_outcome(job.folder(c)) is None for c in cells):
        # Before every claim, as Study.optimize does: a dead process's trial fails and its retry is enqueued.
        # (Only when idle would never come while a budget_from cell keeps re-enqueueing itself: the cells a
        # stopped sweep left running would then never resume.)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if not any(t.user_attrs.get("cell") in cells for t in waiting):
            time.sleep(IDLE_WAIT_S)  # another process runs the rest, or a dead one's trial awaits its grace period
            enqueue(job, list(cells.values()), study)  # and a cell with no live trial at all goes back on the ledger
            continue
        with _claiming(job):  # SQLite has no row locks: two processes could pop the same waiting trial
            trial = ask(study)
        with heartbeat(study, trial):
            try:
                value = objective(trial)
            except optuna.TrialPruned:
                study.tell(trial, state=TrialState.PRUNED)
                continue
            except BaseException:
                study.tell(trial, state=TrialState.FAIL)
                raise
            study.tell(trial, value)


def _started(folder: Path) -> bool:
    """Whether a run of the cell in ``folder`` began before (it appends to ``runs.jsonl`` as it starts)."""
    return (folder / RUNS).exists()


def _resumable(job: CellJob, cell: CellSettings) -> bool:
    """An interrupted cell that can run now: started before, unfinished, waiting for no other cell (a fresh
    cell never gives way to one that would put itself back, or the two would trade places forever)."""
    folder = job.folder(cell.cell_id())
    return _started(folder) and read_outcome(folder) is None and not waiting_on(cell, job.output / "cells")


def exit_with_parent(parent: int) -> None:
    """Exit this process, as a kill would, once ``parent`` (the pid of the process that started it) is no longer
    its parent (checked every :data:`PARENT_POLL_S`): at once if it was gone before this worker started, when
    the worker was already handed to init.

    A SIGTERM or SIGKILL stops the ``progopt sweep`` process without stopping its worker processes, which
    ran on orphaned and held the cores. Exiting at once is safe: the worker's ledger trial goes stale and is
    retried, and its cell resumes from its own study on the next run (as after any kill).
    """
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


@contextmanager
def _claiming(job: CellJob) -> Iterator[None]:
    """An exclusive lock, across this machine's processes, on popping the ledger's next waiting trial (a
    PostgreSQL ledger locks the row itself; a SQLite one does not, so two workers could run one cell)."""
    job.output.mkdir(parents=True, exist_ok=True)
    with open(job.output / ".ledger.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_local(job: CellJob, cells: Sequence[CellSettings], workers: int, *, on_idle: Callable[[], None]) -> None:
    """Run ``cells`` on ``workers`` processes of this machine (this process when 1), calling ``on_idle``
    about once a second (the live table) until all are finished."""
    enqueue(job, cells)
    by_id = {c.cell_id(): c for c in cells}
    if workers <= 1:
        claim_and_run(job, by_id)
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(work, job, by_id, os.getpid()) for _ in range(workers)]
        while not all(f.done() for f in futures):
            on_idle()
            time.sleep(1)
        for future in futures:
            future.result()


def _ray_cell(job: CellJob, settings_json: str, *after: str) -> str:
    """A Ray task: run one cell (resuming it if a previous attempt was interrupted); returns its outcome JSON.
    ``after``: the outcomes of the cells it waits for, passed so that Ray starts it only once they are done."""
    os.environ["PROGOPT_THREADS"] = str(job.threads)
    os.chdir(job.project)
    settings = CellSettings.model_validate_json(settings_json)
    outcome = run_cell(settings, job.folder(settings.cell_id()), storage=job.storage,
                       tracking_uri=job.tracking_uri, parent_run_id=job.parent_run_id, worker="ray")
    return outcome.model_dump_json()


def run_ray(job: CellJob, cells: Sequence[CellSettings], *, address: str | None, cpus_per_cell: float,
            on_idle: Callable[[], None]) -> None:
    """Submit each unfinished cell as a Ray task to the cluster at ``address`` and wait for all of them."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError("--executor ray needs Ray: pip install 'progopt[ray]'") from exc
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=cpus_per_cell, max_retries=3)(_ray_cell)
        refs: dict[str, ray.ObjectRef] = {}
        for c in cells:  # in run order: a cell's peers (budget_from) are submitted before it
            if read_outcome(job.folder(c.cell_id())) is None:
                after = [refs[p] for p in waiting_on(c, job.output / "cells") if p in refs]
                refs[c.cell_id()] = task.remote(job, c.model_dump_json(), *after)
        pending = list(refs.values())
        while pending:
            done, pending = ray.wait(pending, num_returns=len(pending), timeout=1.0)
            ray.get(done)
            on_idle()
    finally:
        ray.shutdown()  # disconnect: a driver left connected exits its process when the cluster goes away
