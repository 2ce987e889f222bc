"""Would a validity tie-break have shipped better programs? A what-if on a finished sweep, scored on test.

The rule: among the fully validated variants whose validation score lies inside the chosen variant's 95%
CI, take the most valid one (share of examples with a parsed, schema-valid output), then the higher score.
For every finished progopt cell of a sweep where that picks a variant more valid than the one the compile
chose, the picked variant is rebuilt from the cell's ``result.json`` and scored on the cell's test split
(the chosen one's test score is in ``outcome.json``). The test split decides nothing here: the rule uses
validation data alone and was written down before these scores were measured; but it was prompted by one
cell's test failures (CoNLL-2003 seed 1), so that cell is not independent evidence for it.

    PROGOPT_THREADS=1 .venv/bin/python experiments/bench_tiebreak.py experiments/results/vs-dspy-2026-11-30

Resumable: each variant's test scores are saved to ``--out``.json as soon as they are measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `programs` is not an installed package: run against this checkout

import numpy as np  # noqa: E402

from optimizer import runtime  # noqa: E402
from optimizer.evaluate import bootstrap_ci, evaluate  # noqa: E402
from optimizer.records import CompileResult, TrialRecord  # noqa: E402
from optimizer.space.build import build_program  # noqa: E402
from optimizer.sweep.cell import cell_task, read_outcome  # noqa: E402


def tie_break(result: CompileResult) -> tuple[TrialRecord, TrialRecord] | None:
    """The compile's chosen record and the one the rule picks instead, or None where the rule keeps it."""
    full = result.best_full()
    chosen = full.get(result.chosen or "")
    if chosen is None:
        return None
    low = chosen.summary.score_ci[0]
    inside = [r for r in full.values() if r.summary.score >= low]
    pick = max(inside, key=lambda r: (round(r.summary.validity_rate, 2), r.summary.score, -r.number))
    better = round(pick.summary.validity_rate, 2) > round(chosen.summary.validity_rate, 2)
    return (chosen, pick) if better else None


def render(rows: dict[str, Any], command: str) -> str:
    """The rows as a markdown table: each cell's shipped variant against the tie-break's, paired CI."""
    lines = ["# A validity tie-break, measured on test after the fact (what-if, no choice changed)", "",
             f"Command: `{command}`; rule and caveats: the script's docstring. {dt.date.today().isoformat()}, "
             f"{platform.machine()}, {os.cpu_count()} cores; "
             + ", ".join(f"{p} {metadata.version(p)}" for p in ("dspy", "llama-cpp-python", "optuna")) + ".",
             "In `+final5` cells the compile chose on its pooled final scoring, not on validation; the rule is "
             "applied to validation all the same.", "",
             "| cell | seed | shipped: validation / valid / test | tie-break: validation / valid / test "
             "| test difference [paired 95% CI] |", "| --- | --- | --- | --- | --- |"]
    for cell, r in rows.items():
        c, t = r["chosen"], r["picked"]
        lo, hi = bootstrap_ci(r["test_diff"])
        lines.append(f"| {r['program'].split(':')[-1]} {r['label']} ({cell}) | {r['seed']} | {c['validation']:.3f} / "
                     f"{c['validity']:.0%} / {c['test']:.3f} | {t['validation']:.3f} / {t['validity']:.0%} / "
                     f"{t['test']:.3f} | {100 * np.mean(r['test_diff']):+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] |")
    return "\n".join([*lines, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", type=Path, help="a sweep's output folder")
    parser.add_argument("--out", type=Path, default=ROOT / "experiments/results/tiebreak-2026-12-03")
    args = parser.parse_args()
    runtime.configure()
    path = args.out.with_suffix(".json")
    rows: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    for folder in sorted((args.sweep / "cells").iterdir()):
        outcome = read_outcome(folder)
        if outcome is None or outcome.state != "done" or not (folder / "result.json").exists():
            continue
        result = CompileResult.model_validate_json((folder / "result.json").read_text(encoding="utf-8"))
        pair = tie_break(result)
        if pair is None or folder.name in rows:
            continue
        chosen, pick = pair
        task = cell_task(outcome.settings)
        p = outcome.settings.program
        test = task.load(p.test or "test", outcome.settings.test_limit)
        runnable = build_program(task.program_class(), pick.steps, task.pool.lm)
        evaluation = evaluate(runnable, test, task.metric, show_progress=False)
        scores = [r.score for r in evaluation.results]
        shipped = outcome.test or {}
        rows[folder.name] = {
            "label": outcome.label, "program": p.ref, "seed": outcome.settings.seed,
            "chosen": {"variant": result.chosen, "validation": chosen.summary.score,
                       "validity": chosen.summary.validity_rate, "test": shipped.get("score"),
                       "test_validity": shipped.get("validity_rate")},
            "picked": {"variant": pick.variant_key, "validation": pick.summary.score,
                       "validity": pick.summary.validity_rate, "test": float(np.mean(scores)),
                       "test_validity": evaluation.summary().validity_rate},
            "test_diff": [b - a for a, b in zip(outcome.test_scores, scores, strict=True)],
            "date": dt.date.today().isoformat()}
        path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
        args.out.with_suffix(".md").write_text(render(rows, " ".join(["python", *sys.argv])), encoding="utf-8")
        print(f"{folder.name} {outcome.label}: chosen {rows[folder.name]['chosen']['test']:.3f}, "
              f"tie-break {rows[folder.name]['picked']['test']:.3f}")


if __name__ == "__main__":
    main()
