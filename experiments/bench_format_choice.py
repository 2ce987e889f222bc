"""Does searching the prompt format pay at a fixed budget? Compile SST-2 on the local pool once per format
set (each single format, and the joint choice) with the same LM-call budget, seed and data, then score each
compile's chosen variant on the test subset (95% bootstrap CI).

Each compile gets its own empty DSPy cache, so none is paid for by another's calls; the test evaluation
shares one cache across compiles (a variant chosen twice is scored once). Run from the repository root:

    .venv/bin/python experiments/bench_format_choice.py

Options: ``--seeds`` (default 0 1), ``--budget`` (LM calls per compile, default 600, as the quickstart),
``--threads`` (llama.cpp threads), ``--out PREFIX`` (default ``experiments/results/format-choice-<date>``).
Writes ``PREFIX.json`` and ``PREFIX.md`` after every compile and skips compiles already in ``PREFIX.json``
(rerun the command to resume).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `programs` is not an installed package: run against this checkout

from optimizer import runtime  # noqa: E402
from optimizer.evaluate import evaluate  # noqa: E402
from optimizer.models import ModelPool, local  # noqa: E402
from optimizer.models.files import cache_dir  # noqa: E402
from optimizer.search.compile import Budget, SearchSettings, SpaceSettings, compile  # noqa: E402
from optimizer.space.build import build_program  # noqa: E402
from programs import sentiment  # noqa: E402

COMMAND = ".venv/bin/python experiments/bench_format_choice.py"
FORMAT_SETS = (("json",), ("chat",), ("compact",), ("json", "compact"), ("json", "chat", "compact"))
VAL_LIMIT, MINIBATCH, TEST_LIMIT = 60, 12, 200  # the quickstart's compile


def run_compile(pool: ModelPool, formats: tuple[str, ...], seed: int, budget: int) -> dict[str, Any]:
    """One compile in a fresh cache; its chosen variant scored on the test subset."""
    task = sentiment.TASK
    train, val = task.load("train"), task.load("val", VAL_LIMIT)
    scratch = Path(tempfile.mkdtemp(prefix="progopt-format-choice-"))
    try:
        runtime.configure(scratch)
        started = time.perf_counter()
        result = compile(sentiment.Sentiment(), trainset=train, valset=val, metric=sentiment.metric, models=pool,
                         budget=Budget(calls=budget),
                         search=SearchSettings(seed=seed, minibatch=MINIBATCH, final_top=0),
                         space=SpaceSettings(formats=formats, strategies=("direct",), demo_draws=1),
                         show_progress=False)
        wall = time.perf_counter() - started
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    chosen = next(t for t in [*result.trials, *result.baselines]
                  if t.variant_key == result.chosen and t.stage == "full")
    runtime.configure(cache_dir() / "bench-format-choice-test")
    program = build_program(sentiment.Sentiment(), result.chosen_steps(), pool.lm)
    test = evaluate(program, task.load("test", TEST_LIMIT), sentiment.metric, show_progress=False).summary()
    return {"formats": list(formats), "seed": seed, "budget": budget, "spent_calls": result.spent["calls"],
            "compile_s": round(wall, 1), "evaluations": len(result.trials), "space_size": result.space.size(),
            "chosen": {name: {"model": s.model, "format": s.format, "strategy": s.strategy, "demos": len(s.demos)}
                       for name, s in result.chosen_steps().items()},
            "val_score": chosen.summary.score, "val_ci95": chosen.summary.score_ci,
            "test_score": test.score, "test_ci95": test.score_ci, "test_validity": test.validity_rate}


def _pct(score: float, ci: list[float]) -> str:
    return f"{100 * score:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def markdown(report: dict[str, Any]) -> str:
    """Every compile, then the mean test score per format set."""
    rows = report["rows"]
    lines = [f"# Format as a searched knob: SST-2 compiles at equal budget ({report['date']})", "",
             f"Command: `{report['command']}`  ",
             f"Machine: {report['machine']}; llama.cpp threads {report['threads']}  ",
             f"Each compile: local pool, {rows[0]['budget'] if rows else '?'} LM calls, val {VAL_LIMIT} "
             f"(minibatch {MINIBATCH}), fresh cache. Test: the chosen variant on the fixed {TEST_LIMIT}-example "
             "SST-2 test subset, accuracy in % with 95% bootstrap CI.", "",
             "| formats searched | seed | chosen (model, format, demos) | val | test (95% CI) | calls | compile s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        chosen = "; ".join(f"{c['model'].split('/')[-1]}, {c['format']}, {c['demos']}" for c in r["chosen"].values())
        lines.append(f"| {'+'.join(r['formats'])} | {r['seed']} | {chosen} | {100 * r['val_score']:.1f} | "
                     f"{_pct(r['test_score'], r['test_ci95'])} | {r['spent_calls']:.0f} | {r['compile_s']:.0f} |")
    lines += ["", "## Mean test accuracy per format set", "", "| formats searched | compiles | mean test |",
              "|---|---|---|"]
    for formats in dict.fromkeys("+".join(r["formats"]) for r in rows):
        scores = [r["test_score"] for r in rows if "+".join(r["formats"]) == formats]
        lines.append(f"| {formats} | {len(scores)} | {100 * sum(scores) / len(scores):.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--budget", type=int, default=600, help="LM calls per compile")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: the engine's)")
    parser.add_argument("--out", type=Path, default=None, help="output prefix (without .json/.md)")
    args = parser.parse_args(argv)
    if args.threads:
        os.environ[local.THREADS_ENV] = str(args.threads)
    today = dt.date.today().isoformat()
    out = args.out or ROOT / "experiments" / "results" / f"format-choice-{today}"
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.with_suffix(".json")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    report = json.loads(path.read_text()) if path.exists() else {
        "command": " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])]), "date": today,
        "machine": f"{os.cpu_count()} cores, {cpu}", "threads": local.n_threads(), "rows": []}
    done = {(tuple(r["formats"]), r["seed"], r["budget"]) for r in report["rows"]}
    pool = ModelPool.default()
    for seed in args.seeds:
        for formats in FORMAT_SETS:
            if (formats, seed, args.budget) in done:
                continue
            row = run_compile(pool, formats, seed, args.budget)
            report["rows"].append(row)
            path.write_text(json.dumps(report, indent=1) + "\n")
            out.with_suffix(".md").write_text(markdown(report))
            print(f"{'+'.join(formats)} seed {seed}: test {_pct(row['test_score'], row['test_ci95'])} "
                  f"chosen {row['chosen']} ({row['compile_s']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
