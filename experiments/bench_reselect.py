"""How much does a second, larger validation of a compile's top variants change which one it ships?

For each finished progopt cell of a sweep (``cells/<id>/result.json``): take the K variants with the best
full-validation scores, evaluate each on the cell's training examples that none of the K shows as a demo
(the "holdout", the same examples for all K) and on the cell's test split, then compare three ways of
choosing among the K: by validation alone (what the compile did), by validation and holdout pooled, and the
best on test (an oracle, for scale). The test split is only measured here, never used to choose.

    PROGOPT_THREADS=1 PROGOPT_CACHE_DIR=/tmp/reselect-cache .venv/bin/python experiments/bench_reselect.py \
        experiments/results/vs-dspy-2026-11-30 --top 5

Resumable: each variant's row is appended to ``PREFIX.json`` as soon as it is measured and skipped on a rerun.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `programs` is not an installed package: run against this checkout

from optimizer import runtime  # noqa: E402
from optimizer.evaluate import bootstrap_ci, evaluate  # noqa: E402
from optimizer.records import CompileResult, TrialRecord  # noqa: E402
from optimizer.space.build import build_program  # noqa: E402
from optimizer.sweep.cell import cell_task  # noqa: E402
from optimizer.sweep.config import CellSettings, stored_settings  # noqa: E402

PACKAGES = ("dspy", "llama-cpp-python", "optuna")
NOTES = "## Notes"


def top_variants(result: CompileResult, k: int) -> list[TrialRecord]:
    """The ``k`` best full-validation records (ties: the earlier trial, as the compile's choice)."""
    full = result.best_full().values()
    return sorted(full, key=lambda r: (-r.summary.score, r.number))[:k]


def holdout(train: list, records: list[TrialRecord], fields: list[str]) -> list:
    """The training examples that no record shows as a demo (compared on their input fields)."""
    shown = {tuple(str(d.get(f)) for f in fields) for r in records for s in r.steps.values() for d in s.demos}
    return [ex for ex in train if tuple(str(ex.get(f)) for f in fields) not in shown]


def measure(folder: Path, k: int, done: dict[str, Any], save: Any) -> None:
    """Measure the top ``k`` variants of one cell into ``done``, calling ``save()`` after each."""
    settings = CellSettings.model_validate(stored_settings(json.loads((folder / "settings.json").read_text(
        encoding="utf-8"))))
    result = CompileResult.model_validate_json((folder / "result.json").read_text(encoding="utf-8"))
    task = cell_task(settings)
    p = settings.program
    train, test = task.load(p.train or "train", settings.train_limit), task.load(p.test or "test", settings.test_limit)
    program = task.program_class()
    fields = sorted({f for _, pred in program.named_predictors() for f in pred.signature.input_fields})
    records = top_variants(result, k)
    held = holdout(train, records, fields)
    for rank, record in enumerate(records):
        key = f"{folder.name}/{record.variant_key}"
        if key not in done:
            runnable = build_program(program, record.steps, task.pool.lm)
            scores = {name: [r.score for r in evaluate(runnable, data, task.metric, show_progress=False).results]
                      for name, data in (("holdout", held), ("test", test))}
            done[key] = {"cell": folder.name, "label": settings.label(), "program": p.ref, "rank": rank,
                         "variant": record.variant_key, "choice": record.variant.model_dump()["steps"],
                         "val": record.summary.score, "val_n": record.examples, "holdout_n": len(held), **scores}
            save()


def choices(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The row each rule chooses: validation only (rank 0), validation and holdout pooled, best on test."""
    pooled = lambda r: (r["val"] * r["val_n"] + sum(r["holdout"])) / (r["val_n"] + len(r["holdout"]))  # noqa: E731
    return {"validation": rows[0], "pooled": max(rows, key=lambda r: (pooled(r), -r["rank"])),
            "oracle": max(rows, key=lambda r: (np.mean(r["test"]), -r["rank"]))}


def render(results: dict[str, Any]) -> str:
    cells: dict[str, list[dict[str, Any]]] = {}
    for row in results["rows"].values():
        cells.setdefault(row["cell"], []).append(row)
    lines = [f"# Second-stage validation of the top variants ({results['date']})", "",
             f"Command: `{results['command']}`", "", f"Machine: {results['machine']}; versions: {results['versions']}",
             ""]
    summary = ["| cell | chosen by validation: test | chosen by val + holdout: test | best of top K on test |",
               "| --- | --- | --- | --- |"]
    for cell, rows in cells.items():
        rows.sort(key=lambda r: r["rank"])
        lines += [f"## {rows[0]['program']} {rows[0]['label']} (cell {cell}, holdout {rows[0]['holdout_n']} "
                  "training examples)", "", "| rank | variant | validation | holdout | test [95% CI] |",
                  "| --- | --- | --- | --- | --- |"]
        for r in rows:
            step = next(iter(r["choice"].values()))
            desc = f"{step['model'].split('/')[-1]}, {step['format']}, {step['demos']}, {step['strategy']}"
            lo, hi = bootstrap_ci(r["test"])
            lines.append(f"| {r['rank']} | {desc} | {r['val']:.3f} | {np.mean(r['holdout']):.3f} | "
                         f"{np.mean(r['test']):.3f} [{lo:.3f}, {hi:.3f}] |")
        lines.append("")
        picked = choices(rows)
        summary.append(f"| {rows[0]['program'].split(':')[-1]} {rows[0]['label']} | "
                       + " | ".join(f"{np.mean(picked[k]['test']):.3f} (rank {picked[k]['rank']})"
                                    for k in ("validation", "pooled", "oracle")) + " |")
    return "\n".join([*lines, "## Summary", "", *summary, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", type=Path, help="a sweep's output folder")
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "experiments/results/reselect-2026-12-01")
    args = parser.parse_args()
    runtime.configure()
    path = args.out.with_suffix(".json")
    results = json.loads(path.read_text()) if path.exists() else {"rows": {}}
    results.update(command=" ".join(["python", *sys.argv]), date=dt.date.today().isoformat(),
                   machine=f"{platform.machine()}, {__import__('os').cpu_count()} cores",
                   versions={p: metadata.version(p) for p in PACKAGES})

    def save() -> None:
        path.write_text(json.dumps(results, indent=1))
        md = args.out.with_suffix(".md")
        notes = md.read_text().partition(NOTES)[2] if md.exists() else ""  # hand-written, kept on re-render
        md.write_text(render(results) + (f"\n{NOTES}{notes}" if notes else ""))

    for folder in sorted((args.sweep / "cells").iterdir()):
        if (folder / "result.json").exists() and (folder / "outcome.json").exists():
            measure(folder, args.top, results["rows"], save)


if __name__ == "__main__":
    main()
