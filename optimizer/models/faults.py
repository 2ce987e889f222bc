"""Fault injection for reliability tests: an engine mixin that makes a seeded share of calls fail the way
real servers and models do, before or instead of the real call.

Faults: ``timeout`` (the call hangs past the policy's timeout), ``exception`` (the engine raises),
``rate_limit`` (429 with a retry-after), ``server_error`` (503), ``empty`` (no text), ``truncated`` (the
text cut and finish reason ``length``) and ``slow`` (the real call, delayed). Every injected fault that
stands for a call reaching the model is reserved on the budget like a real call. The injected counts are
kept per kind in ``FaultPlan.injected`` (thread-safe), so a test can check what it exercised.

>>> plan = FaultPlan(rate=0.3, seed=1)
>>> pool = ModelPool(specs, engine_for=faulty(LlamaEngine, plan, RetryPolicy(base_s=0.01)))
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Any

from dspy.lm15 import Message, Request, Response

from optimizer.accounting import amend_engine_call, reserve_call
from optimizer.models.retry import RateLimited, Resilient, RetryPolicy

KINDS = ("timeout", "exception", "rate_limit", "server_error", "empty", "truncated", "slow")


class InjectedFault(RuntimeError):
    """An engine failure injected by a :class:`FaultPlan`."""


class ServerError(InjectedFault):
    status_code = 503


class FaultPlan:
    """Which calls fail and how: each call draws a fault with probability ``rate`` (kinds uniformly from
    ``kinds``) from one seeded generator shared by every engine using the plan."""

    def __init__(self, rate: float, seed: int, kinds: tuple[str, ...] = KINDS, hang_s: float = 0.3,
                 slow_s: float = 0.05, retry_after_s: float = 0.01):
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")
        self.rate, self.kinds, self.hang_s, self.slow_s, self.retry_after_s = rate, kinds, hang_s, slow_s, retry_after_s
        self.injected: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def draw(self) -> str | None:
        with self._lock:
            if self._rng.random() >= self.rate:
                return None
            kind = self._rng.choice(self.kinds)
            self.injected[kind] += 1
            return kind


class Faulty:
    """Mixin over an engine class: ``complete`` consults ``plan`` first (see the module docstring)."""

    plan: FaultPlan

    def complete(self, request: Request) -> Response:
        kind = self.plan.draw()
        if kind in (None, "slow", "empty", "truncated"):
            if kind == "slow":
                time.sleep(self.plan.slow_s)
            response = super().complete(request)  # type: ignore[misc]
            return response if kind in (None, "slow") else _spoiled(response, kind)
        reserve_call()
        if kind == "timeout":
            time.sleep(self.plan.hang_s)
            raise TimeoutError("injected: the model did not answer")
        if kind == "rate_limit":
            raise RateLimited("injected: 429 Too Many Requests", retry_after=self.plan.retry_after_s)
        if kind == "server_error":
            raise ServerError("injected: 503 Service Unavailable")
        raise InjectedFault("injected: the engine failed")


def _spoiled(response: Response, kind: str) -> Response:
    """The response with no text (``empty``) or its first half and finish reason ``length``."""
    text = response.message.text or ""
    cut, finish = ("", "stop") if kind == "empty" else (text[: len(text) // 2], "length")
    amend_engine_call(finish, cut)
    return Response(id=response.id, model=response.model, message=Message.assistant(cut),
                    finish_reason=finish, usage=response.usage,  # type: ignore[arg-type]
                    provider_data={**(response.provider_data or {}), "finish_reason": finish})


def faulty(engine_class: type, plan: FaultPlan, policy: RetryPolicy | None = None) -> type:
    """A :class:`~optimizer.models.retry.Resilient` ``engine_class`` (the real one: ``LlamaEngine``,
    ``ApiEngine``, ``ReplayEngine``...) with ``plan``'s faults injected beneath its retries; build instances
    with the engine's own arguments."""
    attrs: dict[str, Any] = {"plan": plan, **({"policy": policy} if policy is not None else {})}
    return type(f"Faulty{engine_class.__name__}", (Resilient, Faulty, engine_class), attrs)
