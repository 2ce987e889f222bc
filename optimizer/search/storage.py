"""The Optuna storage a compile runs on, with Optuna's own heartbeat for crash recovery.

Every trial's worker records a heartbeat every ``HEARTBEAT_S`` seconds while the trial runs (see
:func:`heartbeat`). A RUNNING trial whose heartbeat is older than ``GRACE_S`` belongs to a worker that is
gone (killed, crashed, its machine down): :func:`optuna.storages.fail_stale_trials` fails it and
:class:`~optuna.storages.RetryHeartbeatStaleTrialCallback` queues the same params and user attributes again. A
live worker keeps beating, however long its LM calls take, so recovery can never fail its trial."""

from __future__ import annotations

import fcntl
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import get_heartbeat_thread, is_heartbeat_enabled

HEARTBEAT_S = 2
GRACE_S = 12  # > several missed beats under load; how long a killed worker's trial waits to be redone


def open_storage(url: str, heartbeat_s: int = HEARTBEAT_S, grace_s: int = GRACE_S) -> RDBStorage:
    """An RDB storage (SQLite, PostgreSQL, MySQL URL) with heartbeats and retry of stale trials.
    Raises SQLAlchemy's or the driver's error when the URL is malformed or the server unreachable.

    Optuna marks its heartbeat API experimental and warns when ask/tell (not optimize) uses it; this is the
    use it documents for crash recovery, so those two warnings are filtered once a storage is opened."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, module=r"optuna|optimizer")
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    with _sqlite_schema_lock(url):
        return RDBStorage(url, heartbeat_interval=heartbeat_s, grace_period=grace_s,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=None))


@contextmanager
def _sqlite_schema_lock(url: str) -> Iterator[None]:
    """For a SQLite file, an exclusive lock (``<file>.lock``) across this machine's processes while Optuna
    creates or checks its tables: processes opening a fresh file at once otherwise raced the schema creation
    (4 at once failed 6 rounds of 10 with ``UNIQUE constraint failed: alembic_version`` or "database is
    locked"). Only SQLite files are locked here (a lock file needs the file's machine); nothing is held after
    the storage is open."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        yield
        return
    with ExitStack() as stack:
        try:
            handle = stack.enter_context(Path(f"{parsed.database}.lock").open("a"))
        except OSError:  # no such folder, or not writable: opening the database fails too, with SQLAlchemy's error
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        stack.callback(fcntl.flock, handle, fcntl.LOCK_UN)  # released before the file closes
        yield


def as_storage(storage: str | BaseStorage | None) -> BaseStorage | None:
    """A URL opened with :func:`open_storage`; a storage object or None (in memory) as given."""
    return open_storage(storage) if isinstance(storage, str) else storage


def heartbeats(study: optuna.Study) -> bool:
    return is_heartbeat_enabled(study._storage)


def ask(study: optuna.Study) -> optuna.Trial:
    """``study.ask()`` without Optuna's warning that heartbeats belong to ``Study.optimize``: every trial
    asked here runs under :func:`heartbeat`, which is the beat ``optimize`` would give it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        return study.ask()


@contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Beat for ``trial`` while the block runs (nothing on storages without heartbeats)."""
    with get_heartbeat_thread(trial._trial_id, study._storage):
        yield
