"""``ModelPool``: the models a compile may assign to steps, each as a cached ``dspy.LM``.

>>> pool = ModelPool.default()                      # the two embedded local models
>>> pool = ModelPool.from_names(["local/smollm2-135m", "openai/gpt-4o-mini"])
>>> lm = pool.lm("local/smollm2-135m")
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import dspy

from optimizer.models.spec import EMBEDDED_SPECS, ModelSpec


class ModelPool:
    """An ordered set of :class:`ModelSpec` by name, with one ``dspy.LM`` per name per process.

    ``engine_for`` replaces the engine choice (tests use it for record/replay engines)."""

    def __init__(self, specs: Iterable[ModelSpec], engine_for: Callable[[ModelSpec], Any] | None = None):
        self.specs: dict[str, ModelSpec] = {}
        for spec in specs:
            if spec.name in self.specs:
                raise ValueError(f"model {spec.name!r} appears twice in the pool")
            self.specs[spec.name] = spec
        if not self.specs:
            raise ValueError("a model pool needs at least one model")
        self._lms: dict[str, dspy.LM] = {}
        self._engine_for = engine_for
        self._lock = threading.Lock()

    @classmethod
    def default(cls) -> ModelPool:
        """The embedded local pool: SmolLM2-135M-Instruct and Gemma 3 270M (base)."""
        return cls(EMBEDDED_SPECS.values())

    @classmethod
    def from_names(cls, names: Iterable[str], *, api_base: str | None = None,
                   schema_style: str = "json_schema") -> ModelPool:
        """Embedded names resolve to their specs; any other string is a LiteLLM model."""
        return cls(EMBEDDED_SPECS.get(n) or ModelSpec(name=n, provider="litellm", api_base=api_base,
                                                      schema_style=schema_style)  # type: ignore[arg-type]
                   for n in names)

    def journaled(self, path: Path) -> ModelPool:
        """This pool with every model's engine behind one call journal at ``path`` (a rerun replays the outputs
        recorded there: :mod:`optimizer.models.journal`)."""
        from optimizer.models.journal import CallJournal, JournalEngine

        journal, engine_for = CallJournal(path), self._engine_for or default_engine
        return ModelPool(self.specs.values(), engine_for=lambda spec: JournalEngine(engine_for(spec), journal))

    @property
    def names(self) -> list[str]:
        return list(self.specs)

    def __getitem__(self, name: str) -> ModelSpec:
        try:
            return self.specs[name]
        except KeyError:
            raise KeyError(f"model {name!r} is not in the pool {self.names}") from None

    def lm(self, name: str) -> dspy.LM:
        """The shared ``dspy.LM`` for ``name`` (constrained local engine or LiteLLM engine, each with a timeout
        per call and retries of transient failures: :mod:`optimizer.models.retry`)."""
        with self._lock:
            if name not in self._lms:
                spec = self[name]
                engine = (self._engine_for or default_engine)(spec)
                self._lms[name] = dspy.LM(spec.name, engine=engine, max_tokens=spec.max_tokens,
                                          temperature=spec.temperature, num_retries=0)
            return self._lms[name]


def default_engine(spec: ModelSpec) -> Any:
    """The engine a pool gives ``spec``: constrained llama.cpp for a local model, LiteLLM otherwise, each with a
    timeout per call and retries of transient failures (:mod:`optimizer.models.retry`)."""
    if spec.provider == "local":
        from optimizer.models.retry import ResilientLlamaEngine

        return ResilientLlamaEngine(spec)
    from optimizer.models.retry import ResilientApiEngine

    return ResilientApiEngine(spec)
