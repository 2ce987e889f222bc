"""Benchmark label scoring (issue #16, knob 1): the same fixed variant (compact format, the default
instruction, a fixed 4-shot label-balanced demo set) decoded with ``direct`` (regex-constrained greedy
generation) against ``score`` (every label scored in one pass, argmax), ``score-cc`` (contextual
calibration: content-free inputs) and ``score-bc`` (batch calibration: 8 training inputs), on SST-2,
AG News and TREC coarse, on both local models. Per cell: test accuracy with a 95% bootstrap CI,
seconds per example, the share of predictions in the cell's most predicted label, mean confidence.

Run from the repository root (24 cells x 200 test examples; split it with --tasks/--models):

    .venv/bin/python experiments/bench_label_scoring.py [--tasks sst2] [--models local/gemma3-270m]

Writes ``PREFIX.json`` and ``PREFIX.md`` after every cell and skips cells already in ``PREFIX.json``
(rerun to resume). The calibration's scoring calls are counted in the cell's LM calls but not in its
seconds per example (they are paid once per variant, at compile time).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `programs` is not an installed package: run against this checkout

from experiments.bench_formats import Bench, balanced_demos, machine  # noqa: E402
from optimizer import runtime  # noqa: E402
from optimizer.accounting import EngineMeter, metered  # noqa: E402
from optimizer.evaluate import evaluate  # noqa: E402
from optimizer.models import ModelPool, local  # noqa: E402
from optimizer.search.calibrate import calibrate_steps  # noqa: E402
from optimizer.space.build import build_program  # noqa: E402
from optimizer.space.variant import StepConfig, strategy_settings  # noqa: E402
from programs import news, sentiment, trec_coarse  # noqa: E402

COMMAND = ".venv/bin/python experiments/bench_label_scoring.py"
STRATEGIES = ("direct", "score", "score-cc", "score-bc")
SHOTS = 4
LIMIT = 200
STEP = "classify"
TASKS = {
    "sst2": Bench(sentiment.Sentiment, sentiment.TASK, "sentiment", sentiment.metric),
    "ag_news": Bench(news.NewsTopic, news.TASK, "topic", news.metric),
    "trec_coarse": Bench(trec_coarse.CoarseQuestionClassifier, trec_coarse.TASK, "coarse", trec_coarse.metric),
}
PACKAGES = ("dspy", "llama_cpp_python", "numpy", "scipy", "optuna")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "absent"
    return out


def run_cell(pool: ModelPool, model: str, name: str, strategy: str, limit: int) -> dict[str, Any]:
    bench = TASKS[name]
    program = bench.program()
    instruction = dict(program.named_predictors())[STEP].signature.instructions
    step = StepConfig(instruction=instruction, demos=balanced_demos(bench, SHOTS), model=model, format="compact",
                      **strategy_settings(strategy))
    with metered(EngineMeter()) as meter:
        steps = calibrate_steps(program, {STEP: step}, bench.task.load("train"), pool.lm)
    calibration_calls = meter.calls
    configured = build_program(program, steps, pool.lm)
    examples = bench.task.load("test", limit=limit)
    started = time.perf_counter()
    ev = evaluate(configured, examples, bench.metric, show_progress=False)
    wall = time.perf_counter() - started
    s = ev.summary()
    n = s.examples
    predicted = Counter(str((r.prediction or {}).get(bench.label)) for r in ev.results)
    majority, count = predicted.most_common(1)[0]
    return {"model": model, "task": name, "strategy": strategy, "examples": n, "accuracy": s.score,
            "ci95": s.score_ci, "validity": s.validity_rate,
            "s_per_example": sum(r.latency_s for r in ev.results) / n, "wall_s_per_example": wall / n,
            "majority_label": majority, "majority_share": count / n, "mean_confidence": s.mean_confidence,
            "lm_calls": s.lm_calls, "calibration_calls": calibration_calls, "cached_calls": s.cached_calls,
            "prior": steps[STEP].prior, "loadavg_1m": round(os.getloadavg()[0], 2)}


def _acc(row: dict[str, Any]) -> str:
    lo, hi = row["ci95"]
    return f"{100 * row['accuracy']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def markdown(report: dict[str, Any]) -> str:
    rows = report["rows"]
    cells = {(r["task"], r["model"], r["strategy"]): r for r in rows}
    lines = [f"# Label scoring with calibration on the local models ({report['date']})", "",
             f"Command: `{report['command']}` (run in pieces with `--tasks`/`--models`)  ",
             f"Machine: {report['machine']['nproc']} cores, {report['machine']['cpu']}, 24 GiB, no GPU; llama.cpp "
             f"threads {report['threads']}; load average at start {report['machine']['loadavg_at_start']} (the "
             "cores were shared with other work: seconds are upper bounds)  ",
             f"Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}  ",
             f"Variant: compact format, the signature's instruction, {SHOTS} label-balanced train demos (seed "
             f"2026, as experiments/bench_formats.py); {report['limit']} test examples per cell; accuracy in % "
             "with 95% bootstrap CI. majority: share of predictions in the cell's most predicted label. "
             "s/ex: model time per example. conf: mean calibrated probability of the chosen label.", "",
             "## Accuracy", "", f"| task | model | {' | '.join(STRATEGIES)} |", "|---|---|" + "---|" * len(STRATEGIES)]
    for key in dict.fromkeys((r["task"], r["model"]) for r in rows):
        found = [cells.get((*key, k)) for k in STRATEGIES]
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(_acc(r) if r else "-" for r in found) + " |")
    lines += ["", "## Every cell", "",
              "| task | model | strategy | accuracy (95% CI) | majority label (share) | s/ex | conf | valid | "
              "calib. calls |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        conf = "-" if r["mean_confidence"] is None else f"{r['mean_confidence']:.2f}"
        lines.append(f"| {r['task']} | {r['model']} | {r['strategy']} | {_acc(r)} | {r['majority_label']} "
                     f"({100 * r['majority_share']:.0f}%) | {r['s_per_example']:.3f} | {conf} | "
                     f"{100 * r['validity']:.0f}% | {r['calibration_calls']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=LIMIT, help="test examples per cell")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--models", nargs="+", default=None, help="pool members (default: both local models)")
    parser.add_argument("--out", type=Path, default=None, help="output prefix (without .json/.md)")
    parser.add_argument("--cache", type=Path, default=None, help="DSPy cache dir (default: $PROGOPT_CACHE_DIR's)")
    args = parser.parse_args(argv)
    today = dt.date.today().isoformat()
    out = args.out or ROOT / "experiments" / "results" / f"label-scoring-{today}"
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.cache:
        runtime.configure(args.cache)
    path = out.with_suffix(".json")
    report = json.loads(path.read_text()) if path.exists() else {
        "command": COMMAND, "date": today, "machine": machine(), "versions": versions(), "limit": args.limit,
        "threads": local.n_threads(), "rows": []}
    done = {(r["model"], r["task"], r["strategy"]) for r in report["rows"]}
    pool = ModelPool.default()
    for name in args.tasks:
        for model in args.models or pool.names:
            for strategy in STRATEGIES:
                if (model, name, strategy) in done:
                    continue
                row = run_cell(pool, model, name, strategy, args.limit)
                report["rows"].append(row)
                path.write_text(json.dumps(report, indent=1) + "\n")
                out.with_suffix(".md").write_text(markdown(report))
                print(f"{model} {name} {strategy}: {100 * row['accuracy']:.1f}% majority "
                      f"{100 * row['majority_share']:.0f}% {row['s_per_example']:.3f} s/ex", flush=True)
    out.with_suffix(".md").write_text(markdown(report))


if __name__ == "__main__":
    main()
