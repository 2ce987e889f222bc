"""A progopt cell resumed after a kill reports the compile time of all its runs: the clock starts from what
the earlier runs saved and saves as it goes."""

from __future__ import annotations

import json

import pytest

from optimizer.sweep.clock import CLOCK_FILE, CompileClock, cell_clock, read_clock


def _call(clock: CompileClock, call_id: str) -> None:
    clock.on_lm_start(call_id, None, {})
    clock.on_lm_end(call_id, None)


def test_a_resumed_clock_adds_this_run_to_the_earlier_runs_and_saves_as_it_goes():
    saved: list[dict[str, float]] = []
    clock = CompileClock({"seconds": 100.0, "lm_seconds": 40.0}, save=saved.append, every_s=0.0)
    _call(clock, "a")
    _call(clock, "b")
    totals = clock.totals()
    assert clock.calls == 2 and len(saved) == 2
    assert 100.0 < totals["seconds"] < 160.0 and 40.0 < totals["lm_seconds"] < totals["seconds"]
    assert saved[-1]["seconds"] <= totals["seconds"] and saved[-1]["lm_seconds"] <= totals["lm_seconds"]


def test_saves_are_spaced_and_a_first_run_starts_from_zero():
    saved: list[dict[str, float]] = []
    clock = CompileClock({}, save=saved.append, every_s=3600.0)
    for n in range(5):
        _call(clock, str(n))
    assert saved == [] and clock.calls == 5 and clock.totals()["seconds"] < 60.0


def test_the_clock_file_round_trips_and_a_corrupt_one_is_named(tmp_path):
    assert read_clock(tmp_path) == {}
    first = cell_clock(tmp_path)
    _call(first, "a")
    saved = first.finish()
    assert read_clock(tmp_path) == saved and saved["seconds"] >= saved["lm_seconds"] > 0
    assert cell_clock(tmp_path).totals()["seconds"] >= saved["seconds"]  # a second run starts from the first
    (tmp_path / CLOCK_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=str(tmp_path / CLOCK_FILE)):
        read_clock(tmp_path)
    (tmp_path / CLOCK_FILE).write_text('["seconds"]')
    with pytest.raises(ValueError, match="not a cell clock"):
        read_clock(tmp_path)


def test_a_clock_written_with_another_response_cache_is_not_counted(tmp_path):
    (tmp_path / CLOCK_FILE).write_text('{"seconds": 50.0, "lm_seconds": 40.0, "cache": "/a"}')
    assert read_clock(tmp_path, cache="/a") == {"seconds": 50.0, "lm_seconds": 40.0}
    assert read_clock(tmp_path, cache="/b") == {}
    assert cell_clock(tmp_path, cache="/b").finish()["seconds"] < 50.0  # starts from zero, saves its own cache
    assert json.loads((tmp_path / CLOCK_FILE).read_text())["cache"] == "/b"
