"""Time accounting of a sweep cell's compile: its LM requests and the wall seconds inside them
(:class:`CallCounter`) and, for a compile that runs in several pieces, the same kept across its runs
(:class:`CompileClock`)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dspy.utils.callback import BaseCallback

from optimizer.outputs import write_atomic

CLOCK_FILE = "clock.json"  # in a cell's folder: its compile's seconds over all its runs


class CallCounter(BaseCallback):
    """Counts the LM requests a DSPy program or optimizer makes, response-cache hits included (what the compile
    costs on a fresh cache, however warm the cache is when the cell (re)runs), and the wall seconds spent inside
    them (``seconds``: what is not optimizer overhead). Thread-safe; install it with ``dspy.context(callbacks=...)``."""

    def __init__(self) -> None:
        self.calls, self.seconds = 0, 0.0
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        with self._lock:
            self.calls += 1
            self._started[call_id] = time.perf_counter()

    def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        with self._lock:
            started = self._started.pop(call_id, None)
            if started is not None:
                self.seconds += time.perf_counter() - started


class CompileClock(CallCounter):
    """A :class:`CallCounter` for a compile that may run in pieces (a killed progopt cell resumes from its
    study), with the compile's wall seconds. Lifecycle: made when a run of the compile starts, from what the
    earlier runs recorded (``prior``: ``seconds``, ``lm_seconds``; empty for the first run); installed as a
    DSPy callback while the compile runs; after an LM call ends it hands :meth:`totals` to ``save`` at most
    every ``every_s`` seconds, so a kill loses at most that much of the compile's time. Invariant:
    ``totals()["lm_seconds"] <= totals()["seconds"]`` when calls do not overlap."""

    def __init__(self, prior: dict[str, float], save: Callable[[dict[str, float]], None], every_s: float = 2.0):
        super().__init__()
        self._prior = {"seconds": float(prior.get("seconds", 0.0)), "lm_seconds": float(prior.get("lm_seconds", 0.0))}
        self._save, self._every_s = save, every_s
        self._start = self._saved = time.monotonic()
        self._save_lock = threading.Lock()

    def totals(self) -> dict[str, float]:
        """Wall seconds and seconds inside LM calls of every run of the compile so far, this one included."""
        with self._lock:
            lm = self.seconds
        return {"seconds": self._prior["seconds"] + time.monotonic() - self._start,
                "lm_seconds": self._prior["lm_seconds"] + lm}

    def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        super().on_lm_end(call_id, outputs, exception)
        if time.monotonic() - self._saved >= self._every_s and self._save_lock.acquire(blocking=False):
            try:
                self._saved = time.monotonic()
                self._save(self.totals())
            finally:
                self._save_lock.release()

    def finish(self) -> dict[str, float]:
        """Save and return :meth:`totals` (the end of this run of the compile)."""
        totals = self.totals()
        self._save(totals)
        return totals


def read_clock(folder: Path, cache: str | None = None) -> dict[str, float]:
    """What earlier runs of a resumed cell saved in ``folder/clock.json`` (``{}`` for a first run). With
    ``cache`` (what replays the earlier runs' calls: a DSPy cell's call journal), the earlier runs count only if
    they were saved with the same one (with another, the calls are paid again, and counting the earlier runs too
    would count them twice)."""
    path = folder / CLOCK_FILE
    try:
        clock = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        if cache is not None and clock.get("cache") != cache:
            return {}
        return {key: float(clock[key]) for key in ("seconds", "lm_seconds") if key in clock}
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a cell clock ({exc}); delete it to count this run's time only") from exc


def cell_clock(folder: Path, cache: str | None = None, prior: bool = True) -> CompileClock:
    """The :class:`CompileClock` of the cell in ``folder``: it starts from what the cell's earlier runs saved
    (:func:`read_clock`; nothing when not ``prior``: their calls cannot be replayed) and saves to
    ``folder/clock.json`` as it goes, with ``cache`` if given."""
    extra = {} if cache is None else {"cache": cache}

    def save(totals: dict[str, float]) -> None:
        write_atomic(folder / CLOCK_FILE, json.dumps({**totals, **extra}, indent=1))

    return CompileClock(read_clock(folder, cache) if prior else {}, save=save)
