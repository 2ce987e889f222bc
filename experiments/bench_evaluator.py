"""The evaluator's wall time per example next to llama.cpp's own compute, per model × format × label count.

Run from the repository root (about 10 minutes on 2 idle cores):

    .venv/bin/python experiments/bench_evaluator.py

Each cell is a one-step classifier (direct strategy, 4 demos) evaluated with ``optimizer.evaluate`` on
``--examples`` test examples after ``--warmup`` examples (model load, constraint compile, prompt prefix),
on a fresh DSPy cache. llama.cpp's perf counters (``llama_perf_context``) are reset before the timed
examples: "llama.cpp" is their prompt-eval plus eval time, "ratio" is wall / llama.cpp.

Label counts: 2 (SST-2), 6 (TREC coarse), 50 (TREC fine: Banking77's 77 labels are not in
``../shared/datasets``, so TREC's 50 fine labels stand in as the many-label cell).

Resumable: finished cells are kept in ``experiments/results/evaluator-<date>[-<tag>].json`` and skipped on a
rerun. ``--compare OTHER.json`` checks every cell's predictions against another run (e.g. one made at the
commit before a decoding change with ``--tag baseline``) and reports the number of identical predictions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import dspy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `programs` is not an installed package: run against this checkout

from optimizer import runtime  # noqa: E402
from optimizer.evaluate import evaluate  # noqa: E402
from optimizer.metrics import exact_match  # noqa: E402
from optimizer.models import GEMMA3, SMOLLM2, ModelPool, ModelSpec, local  # noqa: E402
from optimizer.space.build import build_program  # noqa: E402
from optimizer.space.variant import StepConfig  # noqa: E402
from programs.trec import Coarse, Fine  # noqa: E402

RESULTS_DIR = ROOT / "experiments" / "results"
MODELS: dict[str, ModelSpec] = {"smollm2": SMOLLM2, "gemma3": GEMMA3}
FORMATS = ("json", "compact", "chat")
STEP = "classify"


class Sentiment(dspy.Signature):
    """Classify the sentiment of a movie review sentence."""

    sentence: str = dspy.InputField()
    label: Literal["negative", "positive"] = dspy.OutputField()


class CoarseType(dspy.Signature):
    """Classify what kind of answer the question asks for."""

    question: str = dspy.InputField()
    label: Coarse = dspy.OutputField()


class FineType(dspy.Signature):
    """Give the fine answer type of the question."""

    question: str = dspy.InputField()
    label: Fine = dspy.OutputField()


# task -> (signature, data folder, input field, label column, label count)
TASKS: dict[str, tuple[type[dspy.Signature], str, str, str, int]] = {
    "sst2": (Sentiment, "sst2", "sentence", "label", 2),
    "trec-coarse": (CoarseType, "trec", "question", "coarse", 6),
    "trec-fine": (FineType, "trec", "question", "fine", 50),
}


class OneStep(dspy.Module):
    def __init__(self, signature: type[dspy.Signature]) -> None:
        super().__init__()
        self.classify = dspy.Predict(signature)

    def forward(self, **inputs: Any) -> dspy.Prediction:
        return self.classify(**inputs)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def examples(task: str, split: str) -> list[dspy.Example]:
    _, folder, field, column, _ = TASKS[task]
    rows = [json.loads(line) for line in (ROOT / "programs" / "data" / folder / f"{split}.jsonl").open()]
    return [dspy.Example(**{field: r[field], "label": r[column]}).with_inputs(field) for r in rows]


def demos(task: str, n: int = 4) -> list[dict[str, Any]]:
    """The first ``n`` train examples that keep labels balanced: at most ``n // labels`` (at least 1) each."""
    per_label, counts, chosen = max(1, n // TASKS[task][4]), dict[str, int](), []
    for ex in examples(task, "train"):
        if counts.get(ex.label, 0) < per_label:
            counts[ex.label] = counts.get(ex.label, 0) + 1
            chosen.append(dict(ex.items()))
        if len(chosen) == n:
            break
    return chosen


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "?")
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "optimizer"], cwd=ROOT, capture_output=True, text=True)
    return {"nproc": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(), "cpu": cpu,
            "python": platform.python_version(), "llama-cpp-python": version("llama_cpp_python"),
            "outlines": version("outlines"), "outlines_core": version("outlines_core"), "dspy": version("dspy"),
            "threads": os.environ.get(local.THREADS_ENV, "default"),
            "commit": git.stdout.strip() + (" (optimizer/ has uncommitted edits)" if dirty.stdout.strip() else "")}


def run_cell(pool: ModelPool, model: str, fmt: str, task: str, warmup: int, n: int) -> dict[str, Any]:
    """One cell: warm-up, then the timed evaluation with llama.cpp's perf counters reset before it."""
    import llama_cpp

    spec = MODELS[model]
    signature = TASKS[task][0]
    config = StepConfig(instruction=signature.instructions, demos=demos(task), model=spec.name, format=fmt)
    program = build_program(OneStep(signature), {STEP: config}, pool.lm)
    test = examples(task, "test")[:warmup + n]
    metric = exact_match("label")
    runtime.configure(tempfile.mkdtemp(prefix="bench-evaluator-"))
    started = time.perf_counter()
    evaluate(program, test[:warmup], metric, show_progress=False)
    warm = time.perf_counter() - started
    ctx = local.load(spec, slot=STEP).llm._ctx.ctx
    llama_cpp.llama_perf_context_reset(ctx)
    started = time.perf_counter()
    ev = evaluate(program, test[warmup:], metric, show_progress=False)
    wall = time.perf_counter() - started
    perf = llama_cpp.llama_perf_context(ctx)
    summary = ev.summary()
    llama_ms = perf.t_p_eval_ms + perf.t_eval_ms
    return {"model": model, "format": fmt, "task": task, "labels": TASKS[task][4], "examples": n,
            "warmup_s": warm, "wall_ms": wall * 1000 / n, "prompt_ms": perf.t_p_eval_ms / n,
            "gen_ms": perf.t_eval_ms / n, "prompt_tokens": perf.n_p_eval / n, "gen_evals": perf.n_eval / n,
            "ratio": wall * 1000 / llama_ms if llama_ms else None, "accuracy": summary.score,
            "validity": summary.validity_rate, "output_tokens": summary.output_tokens / n,
            "cached_calls": summary.cached_calls,
            "predictions": [r.prediction["label"] if r.prediction else None for r in ev.results]}


def first_compile(model: str) -> dict[str, float]:
    """Seconds of the first processor build of each task's JSON-Schema and compact constraints, on a
    model whose vocabulary is already built (a fresh KV slot of a loaded model)."""
    from optimizer.adapters.compact import output_regex, outputs_model
    from optimizer.models.constrain import Constraint

    spec = MODELS[model]
    local.load(spec, slot="bench-compile-warm")  # the model file, its Outlines wrapper and vocabulary
    model_file = local.load(spec, slot="bench-compile")
    out = {}
    for task, (signature, *_rest) in TASKS.items():
        schema = json.dumps(outputs_model(signature).model_json_schema(), sort_keys=True)
        for name, constraint in (("json", Constraint("json_schema", schema)),
                                 ("compact", Constraint("regex", output_regex(signature)))):
            started = time.perf_counter()
            compile_first(model_file, constraint)
            out[f"{task}/{name}"] = time.perf_counter() - started
    return out


def compile_first(model_file: Any, constraint: Any) -> None:
    """Compile ``constraint`` for a loaded model (this commit's API, or the older per-instance processors)."""
    if hasattr(model_file, "compiler"):
        model_file.compiler.index(constraint)
    else:
        model_file.processors.get(constraint)


def cell_key(cell: dict[str, Any]) -> str:
    return f"{cell['model']}/{cell['format']}/{cell['task']}"


def report(data: dict[str, Any], compare: dict[str, Any] | None) -> str:
    commands = "\n".join(f"    {c}" for c in data["commands"])
    lines = [f"# Evaluator overhead, {data['date']}", "", "Commands (run from the repository root, in order; a rerun "
             "skips finished cells):", "", commands, ""]
    lines += [f"- {k}: {v}" for k, v in data["machine"].items()]
    lines += ["", f"{data['examples']} timed test examples per cell after {data['warmup']} warm-up examples; "
              "direct strategy, 4 demos, greedy decoding. ms are per example.", "",
              "| model | format | labels | wall ms | llama.cpp prompt ms (tokens) | llama.cpp gen ms (evals) | "
              "ratio | accuracy | identical to compared run |", "|---|---|---|---|---|---|---|---|---|"]
    def order(key: str) -> tuple[int, ...]:
        model, fmt, task = key.split("/")
        return list(MODELS).index(model), FORMATS.index(fmt), list(TASKS).index(task)

    for key, c in sorted(data["cells"].items(), key=lambda item: order(item[0])):
        same = "—"
        if compare and key in compare["cells"]:
            other = compare["cells"][key]["predictions"]
            same = f"{sum(a == b for a, b in zip(c['predictions'], other, strict=True))}/{len(other)}"
        ratio = f"{c['ratio']:.2f}" if c["ratio"] else "—"
        lines.append(f"| {c['model']} | {c['format']} | {c['labels']} | {c['wall_ms']:.0f} | "
                     f"{c['prompt_ms']:.0f} ({c['prompt_tokens']:.1f}) | {c['gen_ms']:.0f} ({c['gen_evals']:.1f}) | "
                     f"{ratio} | {c['accuracy']:.2f} | {same} |")
    if data.get("compile"):
        lines += ["", "First processor build per constraint (s), vocabulary already built:", "",
                  "| model | " + " | ".join(next(iter(data["compile"].values()))) + " |",
                  "|---|" + "---|" * len(next(iter(data["compile"].values())))]
        lines += [f"| {m} | " + " | ".join(f"{s:.3f}" for s in v.values()) + " |" for m, v in data["compile"].items()]
    if data.get("notes"):
        lines += ["", "Notes:", "", *[f"- {note}" for note in data["notes"]]]
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--tag", default="", help="suffix of the result files (e.g. baseline)")
    parser.add_argument("--date", default=dt.date.today().isoformat(), help="date in the result file names")
    parser.add_argument("--compare", type=Path, help="results JSON whose predictions every cell must match")
    parser.add_argument("--no-compile", action="store_true", help="skip the first-compile measurement")
    parser.add_argument("--report-only", action="store_true", help="rewrite the Markdown from the JSON, run nothing")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    stem = RESULTS_DIR / f"evaluator-{args.date}{'-' + args.tag if args.tag else ''}"
    path = stem.with_suffix(".json")
    data = json.loads(path.read_text()) if path.exists() else {"cells": {}, "compile": {}}
    if args.report_only:
        compare = json.loads(args.compare.read_text()) if args.compare else None
        stem.with_suffix(".md").write_text(report(data, compare))
        return
    command = " ".join(["python experiments/bench_evaluator.py", *map(shlex.quote, sys.argv[1:])])
    data.update(date=args.date, examples=args.examples, warmup=args.warmup, machine=machine())
    data["commands"] = [*data.get("commands", []), command]  # one per (resumed) invocation, in order
    pool = ModelPool.default()
    for model in args.models:
        if not args.no_compile and model not in data["compile"]:
            data["compile"][model] = first_compile(model)
            log(f"{model} first compile: {data['compile'][model]}")
        for fmt in args.formats:
            for task in args.tasks:
                key = f"{model}/{fmt}/{task}"
                if key in data["cells"]:
                    continue
                cell = run_cell(pool, model, fmt, task, args.warmup, args.examples)
                cell["commit"] = data["machine"]["commit"]
                data["cells"][key] = cell
                log(f"{key}: {cell['wall_ms']:.0f} ms/ex, llama.cpp {cell['prompt_ms'] + cell['gen_ms']:.0f} ms, "
                    f"ratio {cell['ratio']:.2f}, acc {cell['accuracy']:.2f}")
                path.write_text(json.dumps(data, indent=1))
    path.write_text(json.dumps(data, indent=1))
    compare = json.loads(args.compare.read_text()) if args.compare else None
    stem.with_suffix(".md").write_text(report(data, compare))
    print(report(data, compare))


if __name__ == "__main__":
    main()
