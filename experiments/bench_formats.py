"""Benchmark the prompt format as a knob: accuracy (95% bootstrap CI), validity and seconds per example
of "json" (DSPy's JSONAdapter, JSON-Schema constrained), "chat" (DSPy's ChatAdapter prompt, its reply
regex-constrained) and "compact" (progopt's CompactAdapter, regex constrained) on both local models,
SST-2, AG News and TREC coarse (and CoNLL-2003 entities, entity F1, with ``--tasks conll2003``), zero-shot
and 4-shot (label-balanced demos from train, fixed seed; a list-valued label such as the entity list makes
them a seeded sample).
For a model with a chat template (SmolLM2) "compact-raw" also measures the compact prompt sent as raw
completion text instead of as the user turn of the template.

Run from the repository root (the default grid is 42 cells x 300 examples):

    .venv/bin/python experiments/bench_formats.py

Options: ``--tasks NAME ...`` (default sst2 ag_news trec_coarse), ``--shots N ...`` (default 0 4),
``--split NAME`` (default test), ``--limit N`` (examples per cell, for a runtime estimate), ``--out PREFIX`` (default
``experiments/results/formats-<date>``), ``--cache DIR`` (DSPy cache; default a dedicated directory),
``--threads N`` (llama.cpp threads; default the engine's).
Writes ``PREFIX.json`` and ``PREFIX.md`` after every cell, so a partial run is usable, and skips cells
already in ``PREFIX.json`` (rerun the command to resume). Cached calls keep their original latency.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `programs` is not an installed package: run against this checkout

from optimizer import runtime  # noqa: E402
from optimizer.adapters import CompactAdapter  # noqa: E402
from optimizer.data import Task  # noqa: E402
from optimizer.evaluate import evaluate  # noqa: E402
from optimizer.metrics import exact_match  # noqa: E402
from optimizer.models import ModelPool, local  # noqa: E402
from optimizer.models.files import cache_dir  # noqa: E402
from optimizer.space.build import build_program  # noqa: E402
from optimizer.space.variant import StepConfig  # noqa: E402
from programs import entities, news, sentiment, trec  # noqa: E402

COMMAND = ".venv/bin/python experiments/bench_formats.py"
FORMATS = ("json", "chat", "compact")
RAW_VARIANT = "compact-raw"  # chat models only: the compact prompt as raw text, not in the chat template
SHOTS = (0, 4)
DEMO_SEED = 2026


class CoarseOnly(dspy.Module):
    """TREC coarse class in one step (the reference program's first step alone)."""

    def __init__(self) -> None:
        super().__init__()
        self.classify = dspy.Predict(trec.CoarseClass)

    def forward(self, question: str) -> dspy.Prediction:
        return self.classify(question=question)


@dataclass(frozen=True)
class Bench:
    program: Callable[[], dspy.Module]
    task: Task
    label: str
    metric: Callable
    step: str = "classify"


TASKS = {
    "sst2": Bench(sentiment.Sentiment, sentiment.TASK, "sentiment", sentiment.metric),
    "ag_news": Bench(news.NewsTopic, news.TASK, "topic", news.metric),
    "trec_coarse": Bench(CoarseOnly, Task("trec", inputs=["question"]), "coarse", exact_match("coarse")),
    "conll2003": Bench(entities.EntityExtractor, entities.TASK, "entities", entities.metric, step="extract"),
}
DEFAULT_TASKS = ("sst2", "ag_news", "trec_coarse")


def balanced_demos(bench: Bench, k: int, seed: int = DEMO_SEED) -> list[dict[str, Any]]:
    """``k`` train examples, labels taken round-robin in a seeded order (distinct labels when k is at most
    the number of labels), in a seeded shuffled order; only the step's input and label fields."""
    rng = random.Random(seed)
    by_label: dict[str, list[dspy.Example]] = defaultdict(list)
    for ex in bench.task.load("train"):
        by_label[json.dumps(ex[bench.label], sort_keys=True)].append(ex)
    labels = sorted(by_label)
    rng.shuffle(labels)
    shuffled = {lab: rng.sample(by_label[lab], len(by_label[lab])) for lab in labels}
    picks = [shuffled[labels[i % len(labels)]][i // len(labels)] for i in range(k)]
    rng.shuffle(picks)
    return [{f: ex[f] for f in [*bench.task.inputs, bench.label]} for ex in picks]


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    return {"nproc": os.cpu_count(), "cpu": cpu, "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}


def run_cell(pool: ModelPool, model: str, name: str, shots: int, fmt: str, limit: int | None, split: str
             ) -> dict[str, Any]:
    bench = TASKS[name]
    program = bench.program()
    instruction = dict(program.named_predictors())[bench.step].signature.instructions
    step = StepConfig(instruction=instruction, demos=balanced_demos(bench, shots) if shots else [], model=model,
                      format="compact" if fmt == RAW_VARIANT else fmt)  # type: ignore[arg-type]
    configured = build_program(program, {bench.step: step}, pool.lm)
    if fmt == RAW_VARIANT:
        dict(configured.named_predictors())[bench.step].adapter = CompactAdapter(chat_template=False)
    examples = bench.task.load(split, limit=limit)
    started = time.perf_counter()
    ev = evaluate(configured, examples, bench.metric, show_progress=False)
    wall = time.perf_counter() - started
    s = ev.summary()
    n = s.examples
    return {"model": model, "task": name, "shots": shots, "format": fmt, "examples": n,
            "accuracy": s.score, "ci95": s.score_ci, "validity": s.validity_rate,
            "s_per_example": sum(r.latency_s for r in ev.results) / n, "wall_s_per_example": wall / n,
            "lm_calls_per_example": s.lm_calls / n, "cached_calls": s.cached_calls,
            "truncations": s.truncations, "input_tokens_per_example": s.input_tokens / n,
            "loadavg_1m": round(os.getloadavg()[0], 2)}


def _acc(row: dict[str, Any]) -> str:
    lo, hi = row["ci95"]
    return f"{100 * row['accuracy']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def markdown(report: dict[str, Any]) -> str:
    """The results as Markdown: accuracy by format side by side, then every measurement."""
    rows = report["rows"]
    formats = [f for f in (*FORMATS, RAW_VARIANT) if any(r["format"] == f for r in rows)]
    lines = [f"# Prompt formats on the local models ({report['date']})", "",
             f"Command: `{report['command']}`  ", f"Machine: {report['machine']['nproc']} cores, "
             f"{report['machine']['cpu']}, llama.cpp threads {report['threads']}; load average at start "
             f"{report['machine']['loadavg_at_start']} (the cores were shared with other work: seconds are "
             "upper bounds)  ",
             f"{report.get('split', 'test').capitalize()} examples per cell: {report['limit'] or 'all'}; "
             f"demos: label-balanced from train, seed {DEMO_SEED}; accuracy (entity F1 on conll2003) in % "
             "with 95% bootstrap CI. Validity: examples whose every call parsed on the first call (a JSON "
             "fallback call would not count). "
             "s/ex: model time per example, Outlines processor builds included.", "",
             "## Accuracy by format", "", f"| task | shots | model | {' | '.join(formats)} |",
             "|---|---|---|" + "---|" * len(formats)]
    cells = {(r["task"], r["shots"], r["model"], r["format"]): r for r in rows}
    for key in dict.fromkeys((r["task"], r["shots"], r["model"]) for r in rows):
        found = [cells.get((*key, f)) for f in formats]
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(_acc(r) if r else "-" for r in found) + " |")
    lines += ["", "## Every cell", "",
              "| model | task | shots | format | accuracy (95% CI) | validity | s/ex | calls/ex | in tok/ex |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['task']} | {r['shots']} | {r['format']} | {_acc(r)} | "
                     f"{100 * r['validity']:.1f}% | {r['s_per_example']:.3f} | {r['lm_calls_per_example']:.2f} | "
                     f"{r['input_tokens_per_example']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=list(DEFAULT_TASKS))
    parser.add_argument("--shots", nargs="+", type=int, default=list(SHOTS))
    parser.add_argument("--split", default="test", help="the split to score on (default test)")
    parser.add_argument("--limit", type=int, default=None, help="examples per cell (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="output prefix (without .json/.md)")
    parser.add_argument("--cache", type=Path, default=cache_dir() / "bench-formats", help="DSPy cache dir")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: the engine's)")
    args = parser.parse_args(argv)
    if args.threads:
        os.environ[local.THREADS_ENV] = str(args.threads)
    threads = local.n_threads()
    today = dt.date.today().isoformat()
    out = args.out or ROOT / "experiments" / "results" / f"formats-{today}"
    out.parent.mkdir(parents=True, exist_ok=True)
    runtime.configure(args.cache)
    path = out.with_suffix(".json")
    report = json.loads(path.read_text()) if path.exists() else {
        "command": " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])]), "date": today,
        "machine": machine(), "limit": args.limit, "split": args.split, "threads": threads, "rows": []}
    done = {(r["model"], r["task"], r["shots"], r["format"]) for r in report["rows"]}
    pool = ModelPool.default()
    cells = [(model, name, shots, fmt) for name in args.tasks for shots in args.shots for model in pool.names
             for fmt in FORMATS + (RAW_VARIANT,) * pool[model].chat]
    cells.sort(key=lambda cell: cell[3] == "chat")  # the slowest format last: partial runs compare the rest
    for model, name, shots, fmt in cells:
        if (model, name, shots, fmt) in done:
            continue
        row = run_cell(pool, model, name, shots, fmt, args.limit, args.split)
        report["rows"].append(row)
        path.write_text(json.dumps(report, indent=1) + "\n")
        out.with_suffix(".md").write_text(markdown(report))
        print(f"{model} {name} {shots}-shot {fmt}: {100 * row['accuracy']:.1f}% valid "
              f"{100 * row['validity']:.0f}% {row['wall_s_per_example']:.3f} s/ex", flush=True)
    out.with_suffix(".md").write_text(markdown(report))  # a rerun of a finished grid only re-renders


if __name__ == "__main__":
    main()
