"""Every model call with a timeout, and retried with backoff when its failure is transient.

``Resilient`` is a mixin over an engine class (``ResilientLlamaEngine``, ``ResilientApiEngine``: still a
``LlamaEngine``/``ApiEngine`` for the adapters that ask). Per request, up to ``policy.attempts`` calls:

- each runs in a helper thread under ``policy.timeout_s``; a call that overruns raises :class:`CallTimeout`
  (the abandoned call finishes in the background: llama.cpp cannot be interrupted, a local call is bounded
  by its ``max_tokens``);
- timeouts, connection errors, empty outputs, 408/409/429/5xx and :class:`RateLimited` are retried after an
  exponential, jittered backoff, or after the server's ``retry-after`` (capped at ``policy.max_wait_s``);
- 401/403/404 (rejected key, unknown model) raise :class:`~optimizer.accounting.ModelUnavailable`, which
  stops the evaluation or compile instead of spending the budget on every example;
- anything else (and the last attempt's failure) is raised: the example fails and is counted as such;
- every attempt goes through the engine's own ``reserve_call``, so retries spend the budget and end with
  :class:`~optimizer.accounting.BudgetExhausted` when it is spent.
"""

from __future__ import annotations

import contextvars
import random
import threading
import time
from typing import Any

from dspy.lm15 import Request, Response
from pydantic import BaseModel, ConfigDict

from optimizer.accounting import STOPPING, ModelUnavailable
from optimizer.models.api import ApiEngine
from optimizer.models.engine import LlamaEngine

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
STOP_STATUS = frozenset({401, 403, 404})


class CallTimeout(TimeoutError):
    """A model call that did not return within the policy's timeout."""


class EmptyOutput(RuntimeError):
    """A call that returned no text at all (never parseable; not cached, so a retry can do better)."""


class RateLimited(RuntimeError):
    """A 429 from a server, with the seconds it asked to wait (``None``: not given)."""

    status_code = 429

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class RetryPolicy(BaseModel):
    model_config = ConfigDict(frozen=True)

    attempts: int = 4
    timeout_s: float = 300.0
    base_s: float = 0.5
    max_wait_s: float = 30.0


def status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def retry_after(exc: BaseException) -> float | None:
    """Seconds a server asked to wait: the exception's ``retry_after`` or its response's header."""
    value = getattr(exc, "retry_after", None)
    if value is None:
        headers = getattr(getattr(exc, "response", None), "headers", None) or {}
        value = headers.get("retry-after") if hasattr(headers, "get") else None
    try:
        return None if value is None else max(float(value), 0.0)
    except (TypeError, ValueError):
        return None


def transient(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError | ConnectionError | EmptyOutput) or status_of(exc) in RETRY_STATUS or (
        type(exc).__name__ in {"Timeout", "APIConnectionError", "ServiceUnavailableError", "InternalServerError"})


def call_with_timeout(fn: Any, request: Request, timeout_s: float) -> Response:
    """``fn(request)`` in a helper thread (same context variables), or :class:`CallTimeout`."""
    outcome: dict[str, Any] = {}
    done = threading.Event()
    context = contextvars.copy_context()

    def target() -> None:
        try:
            outcome["response"] = context.run(fn, request)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name="progopt-call", daemon=True).start()
    if not done.wait(timeout_s):
        raise CallTimeout(f"no answer within {timeout_s:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["response"]


class Resilient:
    """Mixin: timeout and retries around the next class's ``complete`` (see the module docstring)."""

    policy = RetryPolicy()

    def complete(self, request: Request) -> Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = call_with_timeout(super().complete, request, self.policy.timeout_s)  # type: ignore[misc]
                if not (response.message.text or "").strip() and response.finish_reason != "length":
                    raise EmptyOutput("the model returned no text")
                return response
            except STOPPING:
                raise
            except Exception as exc:
                if status_of(exc) in STOP_STATUS:
                    raise ModelUnavailable(f"{getattr(self, 'spec', None) and self.spec.name}: {exc}") from exc
                if attempt >= self.policy.attempts or not transient(exc):
                    raise
                wait = retry_after(exc)
                if wait is None:
                    wait = self.policy.base_s * 2 ** (attempt - 1) * (0.5 + random.random())
                time.sleep(min(wait, self.policy.max_wait_s))


class ResilientLlamaEngine(Resilient, LlamaEngine):
    """The local llama.cpp engine with a timeout per call."""


class ResilientApiEngine(Resilient, ApiEngine):
    """The LiteLLM engine with a timeout per call and retries of transient failures."""

    policy = RetryPolicy(timeout_s=150.0)
