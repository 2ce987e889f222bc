"""Shared fixtures: the real embedded pool and a per-session DSPy cache (so tests really call models)."""

from __future__ import annotations

import pytest

from optimizer import runtime
from optimizer.models import ModelPool


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    runtime.configure(tmp_path_factory.mktemp("dspy-cache"))


@pytest.fixture(scope="session")
def pool() -> ModelPool:
    return ModelPool.default()
