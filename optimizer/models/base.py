"""``Engine``: the one base class of progopt's DSPy 3.4 engines, and the capabilities adapters dispatch on.

Lifecycle of every request (:meth:`Engine.complete`, the same for every engine): :meth:`~Engine.validate`
(DSPy's request checks) -> :meth:`~Engine.reserve` (counted by the active meter, or
:class:`~optimizer.accounting.BudgetExhausted`) -> :meth:`~Engine.generate` (the engine's own model call,
the one method a subclass must write) -> :meth:`~Engine.finish` (accounted, wrapped as a DSPy Response).
DSPy keeps owning the cache, history, callbacks and usage."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from dspy.clients.engines.base import validate_request
from dspy.lm15 import Request, Response, response_to_events

from optimizer.accounting import reserve_call
from optimizer.models.response import finish_call
from optimizer.models.spec import ModelSpec

REGEX_METADATA_KEY = "progopt_regex"  # carried in request metadata: lm15 has no regex response_format
# Metadata flag: the messages' text, concatenated as is, is the whole prompt (no chat template, no
# separators), so a completion-style prompt can end mid-line, at an output field's prefix.
RAW_METADATA_KEY = "progopt_raw"


@dataclass(frozen=True)
class Capabilities:
    """What an engine honours beyond DSPy's own request fields, declared by its class (or, for a wrapper,
    forwarded from the engine it wraps). Adapters choose their prompt path by these flags, never by the
    engine's class. New capabilities are new fields, False by default."""

    regex: bool = False  # a regex in request metadata (REGEX_METADATA_KEY) constrains the output
    raw_prompt: bool = False  # RAW_METADATA_KEY: the messages' text, as is, is the whole prompt
    label_scoring: bool = False  # SCORE_METADATA_KEY: the reply is each given continuation's summed log-prob


LOCAL = Capabilities(regex=True, raw_prompt=True, label_scoring=True)  # in-process llama.cpp with Outlines constraints
API = Capabilities()  # a provider behind LiteLLM: JSON Schema response_format only


def capabilities_of(lm: Any) -> Capabilities:
    """The capabilities of a ``dspy.LM``'s engine (none beyond DSPy's for an engine that declares none)."""
    return getattr(getattr(lm, "engine", None), "capabilities", API)


@dataclass(frozen=True)
class Generation:
    """What one model call produced (``finish``: "stop" or "length")."""

    text: str
    finish: str
    tokens_in: int
    tokens_out: int
    latency: float


class Engine(ABC):
    """A DSPy engine for one :class:`ModelSpec` (see the module docstring for the request lifecycle)."""

    capabilities: ClassVar[Capabilities] = API
    supports_response_schema = True
    supported_params = frozenset({"temperature", "max_tokens", "top_p", "stop", "seed", "response_format"})

    def __init__(self, spec: ModelSpec):
        self.spec = spec

    def complete(self, request: Request) -> Response:
        self.validate(request)
        self.reserve()
        return self.finish(request, self.generate(request))

    def validate(self, request: Request) -> None:
        validate_request(request)

    def reserve(self) -> None:
        """Count the call about to reach the model (raises BudgetExhausted instead when the budget is spent)."""
        reserve_call()

    @abstractmethod
    def generate(self, request: Request) -> Generation:
        """One call of the model (the call is already counted)."""

    def finish(self, request: Request, generation: Generation) -> Response:
        g = generation
        return finish_call(self.spec, request, g.text, finish=g.finish, tokens_in=g.tokens_in,
                           tokens_out=g.tokens_out, latency=g.latency)

    def stream(self, request: Request) -> Any:
        return response_to_events(self.complete(request))

    def close(self) -> None:  # noqa: B027 - an optional hook: most engines hold nothing of their own
        """Nothing to release: models and connections outlive any one engine."""

    def dump_state(self) -> dict[str, Any]:
        return self.spec.model_dump()

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> Engine:
        return cls(ModelSpec(**state))
