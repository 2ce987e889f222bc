"""Benchmark copied-span decoding (issue #38) on CoNLL-2003: for each local model and prompt format, the same
variant (the program's instruction; zero-shot, or ``--shots 4``: a seeded sample of 4 training sentences) with
the span restriction off and on. Per row: micro F1 over the split with its 95% bootstrap CI (examples
resampled), the per-sentence mean F1 (the metric before micro F1), validity, truncations, the number of
extracted strings that are not substrings of their sentence, and seconds per example. A paired CI of the
micro-F1 difference (on minus off) closes each pair.

Run from the repository root (resumable: rows already in PREFIX.json are skipped; written after every row):

    .venv/bin/python experiments/bench_spans.py --limit 200

Options: ``--models``, ``--formats``, ``--shots N``, ``--limit N`` (test sentences), ``--out PREFIX``
(default ``experiments/results/spans-<date>``), ``--cache DIR`` (default a dedicated directory; a rerun
with it replays calls, so seconds per example are only comparable within one uncached run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `programs` is not an installed package: run against this checkout

from optimizer import runtime  # noqa: E402
from optimizer.evaluate import evaluate  # noqa: E402
from optimizer.metrics import entity_f1_mean  # noqa: E402
from optimizer.models import ModelPool  # noqa: E402
from optimizer.space.build import build_program  # noqa: E402
from optimizer.space.variant import StepConfig  # noqa: E402
from optimizer.spans import step_spans  # noqa: E402
from optimizer.statistics import micro_f1, paired_difference  # noqa: E402
from programs.entities import TASK, EntityExtractor, metric  # noqa: E402

COMMAND = ".venv/bin/python experiments/bench_spans.py"
DEMO_SEED = 2026


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    return {"nproc": os.cpu_count(), "cpu": cpu, "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}


def row(pool: ModelPool, model: str, fmt: str, spans: bool, shots: int, train: list, test: list) -> dict[str, Any]:
    program = EntityExtractor()
    signature = program.extract.signature
    demos = [ex.toDict() for ex in random.Random(DEMO_SEED).sample(train, shots)] if shots else []
    config = StepConfig(instruction=signature.instructions, demos=demos, model=model, format=fmt,
                        spans=step_spans(signature, train) if spans else [])
    started = time.perf_counter()
    ev = evaluate(build_program(program, {"extract": config}, pool.lm), test, metric, show_progress=False)
    seconds = time.perf_counter() - started
    summary = ev.summary()
    copied = [e.get("text") for r in ev.results for e in ((r.prediction or {}).get("entities") or [])]
    invented = sum(1 for r, ex in zip(ev.results, test, strict=True)
                   for e in ((r.prediction or {}).get("entities") or []) if e.get("text") not in ex.text)
    per_sentence = entity_f1_mean()
    return {"model": model, "format": fmt, "spans": spans, "shots": shots, "examples": len(test),
            "micro_f1": summary.score, "ci": summary.score_ci, "rows": summary.rows,
            "per_sentence_f1": float(np.mean([per_sentence(ex, dict(r.prediction or {}))
                                              for r, ex in zip(ev.results, test, strict=True)])),
            "validity": summary.validity_rate, "truncations": summary.truncations, "extracted": len(copied),
            "not_substrings": invented, "seconds_per_example": seconds / len(test)}


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [f"# Copied spans on CoNLL-2003 ({meta['date']})", "",
             f"Command: `{meta['command']}`. Machine: {meta['machine']}. Packages: {meta['packages']}.", "",
             "Micro F1 over all entities of the split (CoNLL's scoring; extracting nothing scores 0) with its "
             "95% bootstrap CI; per-sentence F1 is the mean the metric used before (an empty answer on an "
             "entity-free sentence scores 1). 'not copied': extracted strings that are not substrings of their "
             "sentence. Seconds per example include the span restriction's work; both rows of a pair ran in "
             "the same process, one after the other.", "",
             "| model | format | shots | spans | micro F1 | 95% CI | per-sentence F1 | valid | truncated | "
             "extracted | not copied | s/example | on - off (paired 95% CI) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        pair = next((o for o in rows if o is not r and o["spans"] is False and r["spans"] and
                     (o["model"], o["format"], o["shots"]) == (r["model"], r["format"], r["shots"])), None)
        delta = ""
        if pair is not None:
            diff, (low, high) = paired_difference(r["rows"], pair["rows"], micro_f1)
            delta = f"{100 * diff:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"
        lines.append(f"| {r['model'].split('/')[-1]} | {r['format']} | {r['shots']} | {'on' if r['spans'] else 'off'} "
                     f"| {r['micro_f1']:.3f} | [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] | {r['per_sentence_f1']:.3f} | "
                     f"{r['validity']:.1%} | {r['truncations']} | {r['extracted']} | {r['not_substrings']} | "
                     f"{r['seconds_per_example']:.2f} | {delta} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["local/gemma3-270m", "local/smollm2-135m"])
    parser.add_argument("--formats", nargs="+", default=["json", "chat", "compact"])
    parser.add_argument("--shots", type=int, default=0)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--out", default=f"experiments/results/spans-{dt.date.today()}")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "progopt-bench-spans"))
    args = parser.parse_args()
    runtime.configure(args.cache)
    out = Path(args.out)
    state = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").exists() else {"rows": []}
    state["meta"] = {"date": str(dt.date.today()), "command": f"{COMMAND} " + " ".join(sys.argv[1:]),
                     "machine": machine(), "packages": {p: version(p) for p in
                                                        ("dspy", "outlines", "outlines_core", "llama_cpp_python")}}
    train, test = TASK.load("train", limit=200), TASK.load("test", limit=args.limit)
    pool = ModelPool.default()
    for model in args.models:
        for fmt in args.formats:
            for spans in (False, True):
                key = (model, fmt, spans, args.shots, args.limit)
                if any((r["model"], r["format"], r["spans"], r["shots"], r["examples"]) == key for r in state["rows"]):
                    continue
                state["rows"].append(row(pool, model, fmt, spans, args.shots, train, test))
                out.with_suffix(".json").write_text(json.dumps(state, indent=1))
                out.with_suffix(".md").write_text(markdown(state["rows"], state["meta"]))
                print(markdown(state["rows"], state["meta"]).splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
