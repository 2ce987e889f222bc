"""The reliability benchmark: tests/reliability run big, in pieces, each under the shared CPU lock, then a
report with the counts.

    python experiments/bench_reliability.py run      # every piece not yet done (resumable; re-run after a stop)
    python experiments/bench_reliability.py report   # experiments/results/reliability-<date>.md from the counts

Pieces: ``fuzz`` (hypothesis inputs across the data and option loaders; no model, so not locked),
``faults`` (fault-injected compiles, the local model and the loopback server), ``kills-<i>`` (SIGKILL and
resume cycles of a real compile and of a two-worker PostgreSQL compile, a different seed per piece).
Each piece appends its counts to ``experiments/results/reliability/<piece>.jsonl`` and is marked done by
``<piece>.done`` (its exit code)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "experiments" / "results" / "reliability"
LOCK = "/tmp/progopt-cpu.lock"
KILL_PIECES = 4
UNLOCKED = {"fuzz"}  # no model runs in it
PIECES = {
    "fuzz": (["tests/reliability/test_loader_fuzz.py"], {"PROGOPT_FUZZ_EXAMPLES": "2600"}),
    "faults": (["tests/reliability/test_lm_faults.py"], {"PROGOPT_FAULT_COMPILES": "14"}),
    **{f"kills-{i}": (["tests/reliability/test_kills.py"], {"PROGOPT_KILLS": "3", "PROGOPT_KILL_SEED": str(10 + i)})
       for i in range(KILL_PIECES)},
}


def run_piece(name: str) -> int:
    tests, env = PIECES[name]
    counts = OUT / f"{name}.jsonl"
    counts.unlink(missing_ok=True)
    started = time.monotonic()
    lock = [] if name in UNLOCKED else ["flock", LOCK]
    proc = subprocess.run([*lock, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                          cwd=ROOT, env={**os.environ, **env, "PROGOPT_THREADS": "2",
                                         "PROGOPT_RELIABILITY_COUNTS": str(counts)})
    (OUT / f"{name}.done").write_text(json.dumps({"returncode": proc.returncode,
                                                  "seconds": round(time.monotonic() - started)}))
    return proc.returncode


def run(pieces: list[str]) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name in pieces or list(PIECES):
        done = OUT / f"{name}.done"
        if done.exists() and json.loads(done.read_text())["returncode"] == 0:
            continue
        print(f"piece {name} ...", flush=True)
        failed += run_piece(name) != 0
    return 1 if failed else 0


def totals() -> dict:
    """Sum the pieces' counts: fuzz inputs per loader, faults, kills per kind and phase, failed pieces."""
    fuzz: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    kills: Counter[str] = Counter()
    phases: Counter[str] = Counter()
    compiles = 0
    pieces = {}
    for name in PIECES:
        done = OUT / f"{name}.done"
        pieces[name] = json.loads(done.read_text()) if done.exists() else None
        path = OUT / f"{name}.jsonl"
        for line in path.read_text().splitlines() if path.exists() else []:
            row = json.loads(line)
            if row["kind"] == "fuzz":
                fuzz[row["loader"]] += row["inputs"]
                outcomes.update({k: row.get(k, 0) for k in ("ok", "error")})
            elif row["kind"] == "faults":
                faults[row["where"]] += row["injected"]
                compiles += row.get("valid_results", 0)
            elif row["kind"] == "kills":
                kills[row["where"]] += row["kills"]
                phases.update(row.get("phases", {}))
    return {"fuzz": fuzz, "outcomes": outcomes, "faults": faults, "valid_compiles": compiles, "kills": kills,
            "phases": phases, "pieces": pieces}


def report(path: Path) -> None:
    t = totals()
    lines = [f"# Reliability run, {time.strftime('%Y-%m-%d')}", "",
             "Produced by `python experiments/bench_reliability.py run && ... report` (tests/reliability run big, "
             "in pieces under the shared CPU lock; 2 cores shared with other jobs). Every number below is counted "
             "by the tests themselves; a piece whose tests failed is listed with its exit code.", "",
             "## Hypothesis inputs (each loads or raises DataError / UsageError)", "",
             "| loader | inputs |", "|---|---|"]
    lines += [f"| {k} | {v:,} |" for k, v in sorted(t["fuzz"].items())]
    lines += [f"| **total** | **{sum(t['fuzz'].values()):,}** (loaded {t['outcomes']['ok']:,}, refused "
              f"{t['outcomes']['error']:,}) |", "", "## Injected LM faults", "", "| where | faults injected |",
              "|---|---|"]
    lines += [f"| {k} | {v:,} |" for k, v in sorted(t["faults"].items())]
    lines += [f"| **total** | **{sum(t['faults'].values()):,}** |", "",
              f"Fault-injected compiles: {t['valid_compiles']}, each finished with a valid `CompileResult` "
              "(chosen variant among its trials, no trial left RUNNING, spending within budget).", "",
              "## SIGKILLs, each followed by a resume", "", "| compile | kills |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(t["kills"].items())]
    lines += [f"| **total** | **{sum(t['kills'].values())}** |", "",
              "Phase of the real compile at the kill (from what it had stored): " +
              ", ".join(f"{k} {v}" for k, v in sorted(t["phases"].items())) + ".", "",
              "After every resume: no finished trial lost or changed, no request digest paid twice, spent calls "
              "within the budget (two workers: within budget + 1 per other worker), no trial RUNNING, each "
              "baseline complete once and promoted, every MLflow run closed.", "", "## Pieces", "",
              "| piece | exit code | seconds (incl. waiting for the lock) |", "|---|---|---|"]
    lines += [f"| {k} | {v['returncode'] if v else 'not run'} | {v['seconds'] if v else ''} |"
              for k, v in t["pieces"].items()]
    lines += ["", "## What these numbers do not show", "",
              "- Most injected faults hit compiles on *replayed* outputs (tests/fixtures/search_recording.json "
              "through `ReplayEngine`, with the same accounting and retries as the real engines); only the "
              "local-SmolLM2 and loopback-server rows are faults around real model calls.",
              "- The two-worker PostgreSQL compiles also run on replayed outputs, each worker with its own "
              "response cache by design, so 'no request paid twice' is checked on the real SQLite compile only; "
              "there the check is over completed calls: a call in flight at the kill never completed and is "
              "made again by the resume (and counted on the budget twice).",
              "- Most fuzzed inputs are refused (damaged on purpose); the loaded ones are checked to have every "
              "row and a non-empty input field.",
              "- Kill points follow the phases in turn, but the phase recorded is what the study showed at the "
              "kill (a kill aimed at a trial may land in its promotion)."]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(path)


if __name__ == "__main__":
    command, *rest = sys.argv[1:] or ["run"]
    if command == "report":
        report(ROOT / "experiments" / "results" / f"reliability-{time.strftime('%Y-%m-%d')}.md")
    else:
        sys.exit(run(rest))
