"""Benchmark knobs 2 and 3 of issue #16 on SST-2, AG News and TREC coarse, both local models, compact format,
the signature's instruction, ``direct`` decoding, 4 demos:

(a) one label-balanced 4-shot set (``labeled4``, seed 0) vs the best of N=8 such sets (``labeled_draws``,
    seed 0) chosen by accuracy on the validation split (the LM calls choosing took are reported);
(b) fixed 4 demos (``labeled4``) vs 4 retrieved demos (``knn4``: TF-IDF over the train split, label-balanced).

Every row: test accuracy with a 95% bootstrap CI, model seconds per example, input tokens per example and the
share of predictions in the most predicted label. Run from the repository root:

    PROGOPT_THREADS=1 .venv/bin/python experiments/bench_demos.py --tasks sst2 --models local/gemma3-270m

Resumable: each row is appended to ``PREFIX.json`` (and ``PREFIX.md`` re-rendered) as soon as it is measured,
and rows already there are skipped; run it in pieces with ``--tasks``/``--models``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import dspy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `programs` is not an installed package: run against this checkout

from optimizer import runtime  # noqa: E402
from optimizer.data import Task  # noqa: E402
from optimizer.evaluate import evaluate  # noqa: E402
from optimizer.models import ModelPool, local  # noqa: E402
from optimizer.search.candidates import first_label_field, labeled_draws  # noqa: E402
from optimizer.search.retrieval import retrieval_candidates  # noqa: E402
from optimizer.space.build import build_program  # noqa: E402
from optimizer.space.retrieval import RetrievalConfig  # noqa: E402
from optimizer.space.variant import StepConfig  # noqa: E402
from programs import news, sentiment, trec_coarse  # noqa: E402

COMMAND = "PROGOPT_THREADS=1 .venv/bin/python experiments/bench_demos.py"
SHOTS = 4
DRAWS = 8
SEED = 0
STEP = "classify"
NOTES = "## Notes"
PACKAGES = ("dspy", "llama-cpp-python", "scikit-learn", "scipy", "outlines")


@dataclass(frozen=True)
class Bench:
    program: Callable[[], dspy.Module]
    task: Task
    metric: Callable


TASKS = {
    "sst2": Bench(sentiment.Sentiment, sentiment.TASK, sentiment.metric),
    "ag_news": Bench(news.NewsTopic, news.TASK, news.metric),
    "trec_coarse": Bench(trec_coarse.CoarseQuestionClassifier, trec_coarse.TASK, trec_coarse.metric),
}


def candidates(bench: Bench) -> tuple[dict[str, list[dict[str, Any]]], RetrievalConfig, str]:
    """The step's 8 fixed 4-shot sets (``labeled4``, ``labeled4.1``...), its knn4 retrieval and its instruction."""
    signature = dict(bench.program().named_predictors())[STEP].signature
    train = bench.task.load("train")
    fields = [*signature.input_fields, *signature.output_fields]
    label = first_label_field(signature)
    sets = labeled_draws(fields, label, train, [SHOTS], SEED, DRAWS)
    knn = retrieval_candidates(signature, label, [ex.toDict() for ex in train], [SHOTS], SEED)[f"knn{SHOTS}"]
    return sets, knn, signature.instructions


def measure(pool: ModelPool, model: str, name: str, split: str, limit: int, demos: str) -> dict[str, Any]:
    """One program (demo candidate ``demos``) on ``limit`` examples of ``split``."""
    bench = TASKS[name]
    sets, knn, instruction = candidates(bench)
    retrieval = {"retrieval": knn} if demos.startswith("knn") else {"demos": sets[demos]}
    step = StepConfig(instruction=instruction, model=model, format="compact", **retrieval)
    program = build_program(bench.program(), {STEP: step}, pool.lm)
    ev = evaluate(program, bench.task.load(split, limit=limit), bench.metric, show_progress=False)
    s = ev.summary()
    n = s.examples
    label = first_label_field(dict(bench.program().named_predictors())[STEP].signature)
    predicted = Counter(str((r.prediction or {}).get(label)) for r in ev.results)
    majority, count = predicted.most_common(1)[0]
    return {"model": model, "task": name, "split": split, "demos": demos, "examples": n, "accuracy": s.score,
            "ci95": s.score_ci, "validity": s.validity_rate, "lm_calls": s.lm_calls,
            "s_per_example": sum(r.latency_s for r in ev.results) / n,
            "input_tokens_per_example": s.input_tokens / n,
            "majority_label": majority, "majority_share": count / n, "loadavg_1m": round(os.getloadavg()[0], 2)}


def plan(rows: list[dict[str, Any]], model: str, name: str, val_limit: int) -> list[tuple[str, int, str]]:
    """The (split, limit, demos) rows still to measure for one model and task; the best-of-8 test row needs
    every validation row first, so it is planned only once they exist."""
    have = {(r["split"], r["demos"]) for r in rows if r["model"] == model and r["task"] == name}
    todo = [("test", 0, f"labeled{SHOTS}"), ("test", 0, f"knn{SHOTS}")]
    todo += [("val", val_limit, demos) for demos in draw_ids()]
    missing = [(split, limit, demos) for split, limit, demos in todo if (split, demos) not in have]
    if not missing:
        best = best_draw(rows, model, name)
        if ("test", best) not in have:
            missing.append(("test", 0, best))
    return missing


def draw_ids() -> list[str]:
    return [f"labeled{SHOTS}"] + [f"labeled{SHOTS}.{j}" for j in range(1, DRAWS)]


def best_draw(rows: list[dict[str, Any]], model: str, name: str) -> str:
    """The draw with the highest validation accuracy (ties: the earlier draw)."""
    val = {r["demos"]: r["accuracy"] for r in rows if r["model"] == model and r["task"] == name and r["split"] == "val"}
    return max((d for d in draw_ids() if d in val), key=lambda d: (val[d], -draw_ids().index(d)))


def _acc(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    lo, hi = row["ci95"]
    return f"{100 * row['accuracy']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def _cells(row: dict[str, Any] | None) -> str:
    if row is None:
        return "- | - | -"
    return f"{_acc(row)} | {row['s_per_example']:.3f} | {100 * row['majority_share']:.0f}% ({row['majority_label']})"


def markdown(report: dict[str, Any]) -> str:
    rows = report["rows"]
    test = {(r["model"], r["task"], r["demos"]): r for r in rows if r["split"] == "test"}
    keys = list(dict.fromkeys((r["task"], r["model"]) for r in rows))
    m = report["machine"]
    lines = [f"# More demo candidates and retrieved demos (issue #16, knobs 2 and 3), {report['date']}", "",
             f"Command: `{report['command']}` (run in pieces per task and model)  ",
             f"Machine: {m['nproc']} cores (shared with a benchmark sweep), 24 GiB, no GPU, {m['cpu']}; "
             f"llama.cpp threads {report['threads']}; Python {m['python']}  ",
             f"Packages: {', '.join(f'{k} {v}' for k, v in report['packages'].items())}  ",
             f"Setup: compact format, the signature's instruction, direct decoding, {SHOTS} demos; test: the first "
             f"{report['test_limit']} test examples; draws chosen on the first {report['val_limit']} validation "
             "examples. Accuracy in % with 95% bootstrap CI (scipy); s/ex: model seconds per example (cached "
             "calls keep their original latency); majority: share of predictions in the most predicted label.", "",
             f"## (a) one {SHOTS}-shot set (seed 0) vs the best of {DRAWS} sets chosen on validation", "",
             "| task | model | seed-0 set: acc | s/ex | majority | best of 8 (which) | acc | s/ex | majority | "
             "choosing: LM calls |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, model in keys:
        val = [r for r in rows if r["model"] == model and r["task"] == name and r["split"] == "val"]
        best = best_draw(rows, model, name) if len(val) == DRAWS else None
        calls = sum(r["lm_calls"] for r in val)
        lines.append(f"| {name} | {model} | {_cells(test.get((model, name, f'labeled{SHOTS}')))} | {best or '-'} | "
                     f"{_cells(test.get((model, name, best)) if best else None)} | {calls} ({len(val)} sets) |")
    lines += ["", f"## (b) fixed {SHOTS} demos (seed-0 set) vs {SHOTS} retrieved demos", "",
              "| task | model | fixed: acc | s/ex | majority | in tok/ex | retrieved: acc | s/ex | majority | "
              "in tok/ex |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, model in keys:
        fixed, knn = test.get((model, name, f"labeled{SHOTS}")), test.get((model, name, f"knn{SHOTS}"))
        tokens = [f"{r['input_tokens_per_example']:.0f}" if r else "-" for r in (fixed, knn)]
        lines.append(f"| {name} | {model} | {_cells(fixed)} | {tokens[0]} | {_cells(knn)} | {tokens[1]} |")
    lines += ["", "## Validation accuracy of the draws", "", "| task | model | " + " | ".join(draw_ids()) + " |",
              "|---|---|" + "---|" * DRAWS]
    for name, model in keys:
        val = {r["demos"]: r for r in rows if r["model"] == model and r["task"] == name and r["split"] == "val"}
        lines.append(f"| {name} | {model} | " + " | ".join(
            f"{100 * val[d]['accuracy']:.1f}" if d in val else "-" for d in draw_ids()) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, report: dict[str, Any]) -> None:
    """Render the tables, keeping the hand-written ``## Notes`` section of an earlier render."""
    old = path.read_text() if path.exists() else ""
    notes = old[old.index(NOTES):] if NOTES in old else ""
    path.write_text(markdown(report) + ("\n" + notes if notes else ""))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--models", nargs="+", default=None, help="default: both local models")
    parser.add_argument("--test-limit", type=int, default=200)
    parser.add_argument("--val-limit", type=int, default=100)
    parser.add_argument("--max-rows", type=int, default=None, help="stop after this many new rows (short pieces)")
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results" / "demos-2026-11-30")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("PROGOPT_CACHE_DIR", "/tmp/demos-cache")))
    args = parser.parse_args(argv)
    runtime.configure(args.cache)
    path = args.out.with_suffix(".json")
    report = json.loads(path.read_text()) if path.exists() else {
        "command": COMMAND, "date": dt.date.today().isoformat(), "threads": local.n_threads(),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                    "cpu": next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                                 .splitlines() if line.startswith("model name")), "unknown")},
        "packages": {p: metadata.version(p) for p in PACKAGES},
        "test_limit": args.test_limit, "val_limit": args.val_limit, "rows": []}
    pool = ModelPool.default()
    new = 0
    for name in args.tasks:
        for model in args.models or pool.names:
            while todo := plan(report["rows"], model, name, report["val_limit"]):
                if args.max_rows is not None and new >= args.max_rows:
                    return
                split, limit, demos = todo[0]
                row = measure(pool, model, name, split, limit or report["test_limit"], demos)
                report["rows"].append(row)
                new += 1
                path.write_text(json.dumps(report, indent=1) + "\n")
                write_markdown(args.out.with_suffix(".md"), report)
                print(f"{model} {name} {split} {demos}: {100 * row['accuracy']:.1f}% "
                      f"{row['s_per_example']:.3f} s/ex majority {100 * row['majority_share']:.0f}%", flush=True)


if __name__ == "__main__":
    main()
