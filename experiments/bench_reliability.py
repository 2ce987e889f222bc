"""The reliability benchmark: tests/reliability run big, in pieces, each under the shared CPU lock, then a
report with the counts.

    python experiments/bench_reliability.py run      # every piece not yet done (resumable; re-run after a stop)
    python experiments/bench_reliability.py report   # experiments/results/reliability-<date>.md from the counts
    python experiments/bench_reliability.py run --only fuzz --out experiments/results/reliability-2026-12-07
    python experiments/bench_reliability.py report --only fuzz --out experiments/results/reliability-2026-12-07

Pieces: ``fuzz`` (hypothesis inputs across the data and option loaders; no model, so not locked),
``artifact-fuzz-<i>`` (hypothesis artifacts, :data:`ARTIFACT_CHUNKS` chunks of other seeds, together at least
100,000 inputs to ``read_artifact``/``load_artifact``/``progopt validate``; no model, not locked),
``faults`` (fault-injected compiles, the local model and the loopback server), ``kills-<i>`` (SIGKILL and
resume cycles of a real compile and of a two-worker PostgreSQL compile, a different seed per piece).
``--only fuzz|faults|kills`` runs (or reports) one group. Each piece appends its counts to
``<out>/<piece>.jsonl`` (default out: ``experiments/results/reliability``) and is marked done by
``<piece>.done`` (its exit code and seconds); a chunk stopped midway is run again whole."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "experiments" / "results" / "reliability"
LOCK = "/tmp/progopt-cpu.lock"
KILL_PIECES = 4
ARTIFACT_CHUNKS, ARTIFACT_EXAMPLES = 8, 6500  # x 2 properties per chunk: 104,000 artifact inputs
PIECES = {
    "fuzz": (["tests/reliability/test_loader_fuzz.py"], {"PROGOPT_FUZZ_EXAMPLES": "2600"}),
    **{f"artifact-fuzz-{i}": (["tests/reliability/test_artifact_fuzz.py"], {
        "PROGOPT_ARTIFACT_FUZZ_EXAMPLES": str(ARTIFACT_EXAMPLES), "PROGOPT_FUZZ_SEED": str(100 + i)})
       for i in range(ARTIFACT_CHUNKS)},
    "faults": (["tests/reliability/test_lm_faults.py"], {"PROGOPT_FAULT_COMPILES": "14"}),
    **{f"kills-{i}": (["tests/reliability/test_kills.py"], {"PROGOPT_KILLS": "3", "PROGOPT_KILL_SEED": str(10 + i)})
       for i in range(KILL_PIECES)},
}
GROUPS = {"fuzz": [p for p in PIECES if "fuzz" in p], "faults": ["faults"],
          "kills": [p for p in PIECES if p.startswith("kills-")]}
UNLOCKED = set(GROUPS["fuzz"])  # no model runs in them
PACKAGES = ("hypothesis", "dspy", "jsonschema", "pydantic", "pyyaml", "optuna", "llama-cpp-python")


def run_piece(name: str, out: Path) -> int:
    tests, env = PIECES[name]
    counts = out / f"{name}.jsonl"
    counts.unlink(missing_ok=True)
    started = time.monotonic()
    lock = [] if name in UNLOCKED else ["flock", LOCK]
    proc = subprocess.run([*lock, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                          cwd=ROOT, env={**os.environ, **env, "PROGOPT_THREADS": "2",
                                         "PROGOPT_RELIABILITY_COUNTS": str(counts)})
    (out / f"{name}.done").write_text(json.dumps({"returncode": proc.returncode,
                                                  "seconds": round(time.monotonic() - started)}))
    return proc.returncode


def run(pieces: list[str], out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name in pieces:
        done = out / f"{name}.done"
        if done.exists() and json.loads(done.read_text())["returncode"] == 0:
            continue
        print(f"piece {name} ...", flush=True)
        failed += run_piece(name, out) != 0
    return 1 if failed else 0


def totals(pieces: list[str], out: Path) -> dict:
    """Sum the pieces' counts: fuzz inputs and outcomes per loader, faults, kills per kind and phase, pieces."""
    fuzz: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    by_loader: dict[str, Counter[str]] = {}
    faults: Counter[str] = Counter()
    kills: Counter[str] = Counter()
    phases: Counter[str] = Counter()
    compiles = 0
    done_by: dict[str, dict | None] = {}
    for name in pieces:
        done = out / f"{name}.done"
        done_by[name] = json.loads(done.read_text()) if done.exists() else None
        path = out / f"{name}.jsonl"
        for line in path.read_text().splitlines() if path.exists() else []:
            row = json.loads(line)
            if row["kind"] == "fuzz":
                fuzz[row["loader"]] += row["inputs"]
                counts = {k: row.get(k, 0) for k in ("ok", "error", "other")}
                outcomes.update(counts)
                by_loader.setdefault(row["loader"], Counter()).update(counts)
            elif row["kind"] == "faults":
                faults[row["where"]] += row["injected"]
                compiles += row.get("valid_results", 0)
            elif row["kind"] == "kills":
                kills[row["where"]] += row["kills"]
                phases.update(row.get("phases", {}))
    return {"fuzz": fuzz, "outcomes": outcomes, "by_loader": by_loader, "faults": faults, "valid_compiles": compiles,
            "kills": kills, "phases": phases, "pieces": done_by}


def _machine() -> list[str]:
    """The command line, machine, date and package versions, for the report's header."""
    uname = subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout.strip()
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return [f"- command: `python experiments/bench_reliability.py {' '.join(sys.argv[1:])}` (after the same with "
            "`run`)", f"- machine: `nproc` {os.cpu_count()}, `uname -a` {uname}",
            f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
            f"- Python {platform.python_version()}; {', '.join(versions)}"]


def _fuzz_lines(t: dict) -> list[str]:
    lines = ["## Hypothesis inputs (each loads, or raises the project's error: DataError / UsageError / "
             "ArtifactError naming the file and the line or JSON path)", "",
             "| loader | inputs | loaded | refused with the project's error | any other exception |",
             "|---|---|---|---|---|"]
    for name, n in sorted(t["fuzz"].items()):
        c = t["by_loader"][name]
        lines.append(f"| {name} | {n:,} | {c['ok']:,} | {c['error']:,} | {c['other']:,} |")
    o, artifact = t["outcomes"], sum(n for k, n in t["fuzz"].items() if k.startswith("artifact"))
    return [*lines, f"| **total** | **{sum(t['fuzz'].values()):,}** | {o['ok']:,} | {o['error']:,} | "
            f"**{o['other']:,}** |", "", f"Artifact inputs: {artifact:,} (`read_artifact`, `load_artifact` and "
            "`progopt validate`, one of the three per input).", ""]


def _fault_lines(t: dict) -> list[str]:
    lines = ["## Injected LM faults", "", "| where | faults injected |", "|---|---|"]
    lines += [f"| {k} | {v:,} |" for k, v in sorted(t["faults"].items())]
    return [*lines, f"| **total** | **{sum(t['faults'].values()):,}** |", "",
            f"Fault-injected compiles: {t['valid_compiles']}, each finished with a valid `CompileResult` "
            "(chosen variant among its trials, no trial left RUNNING, spending within budget).", ""]


def _kill_lines(t: dict) -> list[str]:
    lines = ["## SIGKILLs, each followed by a resume", "", "| compile | kills |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(t["kills"].items())]
    return [*lines, f"| **total** | **{sum(t['kills'].values())}** |", "",
            "Phase of the real compile at the kill (from what it had stored): " +
            ", ".join(f"{k} {v}" for k, v in sorted(t["phases"].items())) + ".", "",
            "After every resume: no finished trial lost or changed, no request digest paid twice, spent calls "
            "within the budget (two workers: within budget + 1 per other worker), no trial RUNNING, each "
            "baseline complete once and promoted, every MLflow run closed.", ""]


CAVEATS = {
    "faults": ["- Most injected faults hit compiles on *replayed* outputs (tests/fixtures/search_recording.json "
               "through `ReplayEngine`, with the same accounting and retries as the real engines); only the "
               "local-SmolLM2 and loopback-server rows are faults around real model calls."],
    "kills": ["- The two-worker PostgreSQL compiles also run on replayed outputs, each worker with its own "
              "response cache by design, so 'no request paid twice' is checked on the real SQLite compile only; "
              "there the check is over completed calls: a call in flight at the kill never completed and is "
              "made again by the resume (and counted on the budget twice).",
              "- Kill points follow the phases in turn, but the phase recorded is what the study showed at the "
              "kill (a kill aimed at a trial may land in its promotion)."],
    "fuzz": ["- Most fuzzed inputs are refused (damaged on purpose); the loaded ones are checked to have every "
             "row and a non-empty input field (data), or to be a valid artifact (artifacts).",
             "- Hypothesis inputs are not uniformly random: each chunk is one seeded run of the strategies in "
             "tests/reliability/test_artifact_fuzz.py, so the inputs are many variations of the shapes written "
             "there (hostile values at ~30 JSON paths, keys added to objects, byte splices, truncations)."],
}


def report(path: Path, groups: list[str], out: Path) -> None:
    """``path``: the counts of ``groups`` (pieces under ``out``) as a Markdown report."""
    pieces = [p for g in groups for p in GROUPS[g]]
    t = totals(pieces, out)
    lines = [f"# Reliability run, {time.strftime('%Y-%m-%d')}", "",
             "Produced by `python experiments/bench_reliability.py run` then `... report` with the same options "
             f"(tests/reliability run big, in pieces, model pieces under the shared CPU lock; 2 cores shared with "
             f"other jobs; counts in `{out.relative_to(ROOT)}`). Every number below is counted by the tests "
             "themselves; a piece whose tests failed is listed with its exit code."
             + ("" if groups == list(GROUPS) else f" Groups run: {', '.join(groups)} (the others: see the "
                "earlier reliability reports)."), "", *_machine(), ""]
    sections = {"fuzz": _fuzz_lines, "faults": _fault_lines, "kills": _kill_lines}
    for group in groups:
        lines += sections[group](t)
    lines += ["## Pieces", "", "| piece | exit code | seconds (incl. waiting for the lock) |", "|---|---|---|"]
    lines += [f"| {k} | {v['returncode'] if v else 'not run'} | {v['seconds'] if v else ''} |"
              for k, v in t["pieces"].items()]
    lines += ["", "## What these numbers do not show", "", *[c for g in groups for c in CAVEATS[g]]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="run", choices=["run", "report"])
    parser.add_argument("pieces", nargs="*", help="run only these pieces (default: every piece of the groups)")
    parser.add_argument("--only", choices=list(GROUPS), action="append", help="a group of pieces (repeatable)")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the pieces' counts")
    args = parser.parse_args()
    groups = args.only or list(GROUPS)
    out = args.out.resolve()
    if args.command == "report":
        report(ROOT / "experiments" / "results" / f"reliability-{time.strftime('%Y-%m-%d')}.md", groups, out)
        return 0
    return run(args.pieces or [p for g in groups for p in GROUPS[g]], out)


if __name__ == "__main__":
    sys.exit(main())
