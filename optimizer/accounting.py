"""Per-call accounting: every LM call (cache hits included, marked) with tokens, latency, cost,
finish reason and validity; totals per model and per program step.

Two layers. The engines report each real model call to the active :class:`EngineMeter` (the budget's
independent count, one per compile, reached through a ``ContextVar``). A :class:`Ledger` (a DSPy callback)
sees every call the program makes, cached or not, names the step (predictor) that made it, and marks
whether the adapter could parse the output. Nothing here is process-wide.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import dspy
from dspy.utils.callback import BaseCallback

from optimizer.models.spec import ModelSpec


@dataclass
class CallRecord:
    """One LM call. ``cached`` calls cost nothing now; ``cost`` is what the call costs when paid."""

    model: str
    step: str | None = None
    cached: bool = True
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    cost: float = 0.0
    finish_reason: str | None = None
    valid: bool | None = None
    text: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def call_cost(spec: ModelSpec, tokens_in: int, tokens_out: int) -> float:
    price_in, price_out = spec.prices()
    return ((price_in or 0.0) * tokens_in + (price_out or 0.0) * tokens_out) / 1e6


class BudgetExhausted(RuntimeError):
    """Raised by an engine instead of calling a model once the active budget is spent."""


class ModelUnavailable(RuntimeError):
    """A model that cannot answer any request (unknown model, rejected credentials): retrying or trying the
    next example would only spend budget, so it stops the evaluation or compile like :class:`BudgetExhausted`."""


STOPPING = (BudgetExhausted, ModelUnavailable)


def raise_stopping(exc: BaseException) -> None:
    """Raise the :data:`STOPPING` error wrapped in ``exc`` (a fresh one of its type, chained), if any."""
    stop = stopping_cause(exc)
    if stop is not None:
        raise type(stop)(str(stop)) from exc


def stopping_cause(exc: BaseException) -> BudgetExhausted | ModelUnavailable | None:
    """The :data:`STOPPING` error in ``exc``'s cause/context chain (DSPy wraps engine errors), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, STOPPING):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class MeterHooks(Protocol):
    """Observes one :class:`EngineMeter` (a compile's session, a sweep cell's status file). For each model
    call, in the calling thread and outside the meter's lock: ``before_call`` (may lower the limits with
    :meth:`EngineMeter.set_limits`, e.g. by what other workers of a study spent), then the meter counts the
    call or raises :class:`BudgetExhausted`, then ``counted`` (e.g. persist the count, so a kill loses none)."""

    def before_call(self, meter: EngineMeter) -> None: ...

    def counted(self, meter: EngineMeter) -> None: ...


@dataclass(eq=False)
class EngineMeter:
    """The model calls of one metered scope (a compile, a sweep cell) and their cost; thread-safe.
    Response-cache hits are never counted; a call journal's replays are, as the calls they replay (see
    :mod:`optimizer.models.journal`), so a resumed cell spends its budget as one uninterrupted run.
    Engines reach the active meter through :func:`reserve_call` (a ``ContextVar``, see :func:`metered`), so two
    compiles in one process, on two threads, each count only their own calls.

    A meter with a ``parent`` (the meter active when it was made) also counts every call in the parent and
    is bound by its limits. This scope never exceeds its call limit; cost and time are checked before the
    call, and the call in flight may overshoot them by its own cost and duration."""

    max_calls: int | None = None
    max_cost: float | None = None
    deadline: float | None = None  # on time.monotonic()'s clock
    hooks: tuple[MeterHooks, ...] = ()
    parent: EngineMeter | None = field(default=None, repr=False)
    calls: int = field(default=0, init=False)
    cost: float = field(default=0.0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, init=False)

    def _limit_reached(self) -> str | None:
        if self.max_calls is not None and self.calls >= self.max_calls:
            return f"LM-call budget reached ({self.max_calls} calls)"
        if self.max_cost is not None and self.cost >= self.max_cost:
            return f"cost budget reached (US${self.max_cost:.6f})"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "time budget reached"
        return None

    def reserve(self) -> None:
        """Count one model call here and in every parent, or raise :class:`BudgetExhausted` (counting none)."""
        for hook in self.hooks:
            hook.before_call(self)
        with self._lock:
            reached = self._limit_reached()
            if reached is not None:
                raise BudgetExhausted(reached)
            self.calls += 1
        if self.parent is not None:
            try:
                self.parent.reserve()
            except BaseException:
                with self._lock:
                    self.calls -= 1
                raise
        for hook in self.hooks:
            hook.counted(self)

    def add_cost(self, cost: float) -> None:
        with self._lock:
            self.cost += cost
        if self.parent is not None:
            self.parent.add_cost(cost)

    def set_limits(self, calls: int | None, cost: float | None, deadline: float | None) -> None:
        with self._lock:
            self.max_calls, self.max_cost, self.deadline = calls, cost, deadline

    def exhausted(self) -> bool:
        """Whether a limit here or in a parent is reached (the next :meth:`reserve` would raise)."""
        with self._lock:
            reached = self._limit_reached() is not None
        return reached or (self.parent is not None and self.parent.exhausted())


METER_SETTING = "progopt_meter"  # the active meter's key in DSPy's context overrides


@contextmanager
def metered(meter: EngineMeter) -> Iterator[EngineMeter]:
    """Within the block, engines called from this context count against ``meter``.

    The meter rides in DSPy's context overrides (``dspy.context``, itself a ``ContextVar``): threads that
    run in a copy of this context (:mod:`optimizer.evaluate`, the per-call timeout thread) and the worker
    threads DSPy's own ``ParallelExecutor`` starts (``dspy.Evaluate``, DSPy optimizers, a program's
    ``dspy.Parallel``) all see it, and no other context does."""
    with dspy.context(**{METER_SETTING: meter}):
        yield meter


def active_meter() -> EngineMeter | None:
    """The meter engines called from this context count against, if any."""
    meter = dspy.settings.get(METER_SETTING)
    return meter if isinstance(meter, EngineMeter) else None


def reserve_call() -> None:
    """Called by engines before each real model call: counted by the active meter, which raises
    :class:`BudgetExhausted` instead when its budget is spent. Outside any meter: not counted, no limit."""
    meter = active_meter()
    if meter is not None:
        meter.reserve()


_current: ContextVar[CallRecord | None] = ContextVar("progopt_current_call", default=None)
_last: ContextVar[CallRecord | None] = ContextVar("progopt_last_call", default=None)
_step: ContextVar[str | None] = ContextVar("progopt_step", default=None)


@contextmanager
def in_step(name: str | None) -> Iterator[None]:
    """LM calls made in the block belong to program step ``name`` (engines give each step of a program its
    own llama.cpp instance, see :func:`optimizer.models.local.load`); None leaves the current step."""
    if name is None:
        yield
        return
    token = _step.set(name)
    try:
        yield
    finally:
        _step.reset(token)


def current_step() -> str | None:
    """The program step (predictor name) whose LM call is running in this context, if known."""
    return _step.get()


def report_engine_call(spec: ModelSpec, tokens_in: int, tokens_out: int, latency: float, finish: str,
                       text: str) -> None:
    """Called by engines after each real model call (the call was counted by :func:`reserve_call`)."""
    cost = call_cost(spec, tokens_in, tokens_out)
    meter = active_meter()
    if meter is not None:
        meter.add_cost(cost)
    record = _current.get()
    if record is not None:
        record.cached, record.input_tokens, record.output_tokens = False, tokens_in, tokens_out
        record.latency_s, record.cost, record.finish_reason, record.text = latency, cost, finish, text


def amend_engine_call(finish: str, text: str) -> None:
    """Correct the finish reason and text of the call just reported (a wrapper that altered the output)."""
    record = _current.get()
    if record is not None:
        record.finish_reason, record.text = finish, text


def _response_fields(lm: Any) -> dict[str, Any]:
    """Tokens, latency and finish reason of a cache hit, from the response DSPy cached."""
    entry = lm.history[-1] if getattr(lm, "history", None) else {}
    response = entry.get("response")
    if isinstance(response, list | tuple):
        response = response[0] if response else None
    data = getattr(response, "provider_data", None) or {}
    usage = getattr(response, "usage", None)
    message = getattr(response, "message", None)
    return {"input_tokens": getattr(usage, "input_tokens", 0) or 0,
            "output_tokens": getattr(usage, "output_tokens", 0) or 0,
            "latency_s": data.get("latency_s", 0.0), "finish_reason": data.get("finish_reason"),
            "text": getattr(message, "text", None)}


class Ledger(BaseCallback):
    """Collects a :class:`CallRecord` for every LM call made while it is installed as a DSPy callback.

    ``steps`` maps ``id(predictor)`` to its name in the program; ``specs`` maps model strings to specs
    (for pricing cache hits; default: the spec of the LM's engine).
    Records are appended from any thread; read them after the calls finish.
    """

    def __init__(self, steps: dict[int, str] | None = None, specs: dict[str, ModelSpec] | None = None):
        self.steps, self.specs = steps or {}, specs or {}
        self.records: list[CallRecord] = []
        self._pending: dict[str, tuple[CallRecord, Any, Any]] = {}
        self._step_tokens: dict[str, Any] = {}
        self._lock = threading.Lock()

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        name = self.steps.get(id(instance))
        if name is not None:
            self._step_tokens[call_id] = _step.set(name)

    def on_module_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        token = self._step_tokens.pop(call_id, None)
        if token is not None:
            _step.reset(token)

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        record = CallRecord(model=getattr(instance, "model", "?"), step=_step.get())
        self._pending[call_id] = (record, _current.set(record), instance)

    def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        record, token, lm = self._pending.pop(call_id)
        _current.reset(token)
        if exception is not None:
            record.valid, record.error = False, f"{type(exception).__name__}: {exception}"
        elif record.cached:
            for key, value in _response_fields(lm).items():
                setattr(record, key, value)
            spec = self.specs.get(record.model) or getattr(getattr(lm, "engine", None), "spec", None)
            if isinstance(spec, ModelSpec):
                record.cost = call_cost(spec, record.input_tokens, record.output_tokens)
        _last.set(record)
        with self._lock:
            self.records.append(record)

    def on_adapter_parse_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        record = _last.get()
        if record is not None:
            record.valid = exception is None
            if exception is not None and record.error is None:
                record.error = f"{type(exception).__name__}: {str(exception)[:500]}"


def totals(records: list[CallRecord], by: str) -> dict[str, dict[str, float]]:
    """Sums of calls, cached calls, tokens, cost and latency grouped by ``by`` ("model" or "step")."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in records:
        row = out[str(getattr(r, by))]
        row["calls"] += 1
        row["cached_calls"] += int(r.cached)
        row["input_tokens"] += r.input_tokens
        row["output_tokens"] += r.output_tokens
        row["cost"] += r.cost
        row["latency_s"] += r.latency_s
    return {k: dict(v) for k, v in out.items()}
