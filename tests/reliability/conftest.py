"""The reliability suite: every test here is marked ``reliability`` and ``slow`` (``-m 'not slow'`` skips it).

Sizes come from the environment so the benchmark (``experiments/bench_reliability.py``) can run the same
tests bigger: ``PROGOPT_FUZZ_EXAMPLES`` (hypothesis examples per fuzz test), ``PROGOPT_FAULT_COMPILES``
(fault-injected compiles), ``PROGOPT_KILLS`` (SIGKILL/resume cycles per compile kind). When
``PROGOPT_RELIABILITY_COUNTS`` names a file, each test appends what it exercised there as a JSON line."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability/" in item.nodeid:
            item.add_marker(pytest.mark.reliability)
            item.add_marker(pytest.mark.slow)


def size(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@pytest.fixture
def record_counts(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``record_counts(kind=..., **numbers)``: one JSON line in ``$PROGOPT_RELIABILITY_COUNTS``, if set."""

    def record(**counts: Any) -> None:
        path = os.environ.get("PROGOPT_RELIABILITY_COUNTS")
        if path:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"test": request.node.name, **counts}) + "\n")

    return record
