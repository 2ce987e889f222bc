"""Bring finished sweep cells' test evaluation up to the sweep's ``test_limit`` after a test subset grew.

CoNLL-2003's committed test subset had 100 sentences when its cells of seeds 0 and 1 ran, below the sweep's
``test_limit`` (200) and the issue's 200-300; ``programs/data/make_subsets.py`` now draws 300 (one shuffled
order from offset 0, so the first 100 are the same sentences). A fresh run of the sweep tests on 200. This
scores each finished cell's shipped program (``artifact.json``, or DSPy's ``dspy_program.json``) on the test
rows it has not seen yet, in the same way as the cell did (:func:`optimizer.sweep.cell.run_cell`: DSPy cells
with their model and DSPy's adapter), and rewrites its ``outcome.json``: ``test_scores`` extended; score,
bootstrap CI, validity, failure and cost over all rows; calls and tokens summed. Latency p50/p95 stay those of
the first run (its per-example latencies were not kept): ``test["latency_examples"]`` says over how many.
``test["topped_up"]`` records the rows added, when and at which commit.

    PROGOPT_THREADS=1 .venv/bin/python experiments/topup_test.py experiments/results/vs-dspy-2026-11-30 \
        --only program=EntityExtractor

``--rescore`` instead re-runs every test row of a cell whose task metric combines at the corpus level (CoNLL-2003's
micro F1, issue #38) and whose outcome has no rows yet: the test summary is replaced by the new one (rows, micro F1
and its CI), and ``test["superseded"]`` keeps the old score, its aggregate ("mean": per-sentence F1) and how many
per-example scores the rerun reproduced (decoding is greedy, so all of them unless something changed).

    PROGOPT_THREADS=1 .venv/bin/python experiments/topup_test.py experiments/results/vs-dspy-2026-11-30 \
        --only program=EntityExtractor --rescore

Resumable: a cell's outcome is rewritten (atomically) as soon as its rows are scored; finished ones are skipped,
so two processes can share the work (``--only seed=0``, ``--only seed=1``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `programs` is not an installed package: run against this checkout

from rich.progress import track  # noqa: E402

from optimizer import runtime  # noqa: E402
from optimizer.evaluate import Evaluation, bootstrap_ci, evaluate  # noqa: E402
from optimizer.statistics import aggregate_name  # noqa: E402
from optimizer.sweep.cell import OUTCOME, CellOutcome, cell_task, read_outcome, write_json  # noqa: E402
from optimizer.sweep.config import select  # noqa: E402

WEIGHTED = ("validity_rate", "cost_per_example", "failure_rate", "call_failure_rate")
SUMMED = ("lm_calls", "cached_calls", "input_tokens", "output_tokens", "truncations")


def shipped_program(outcome: CellOutcome, folder: Path, task: Any) -> tuple[Any, dict[str, Any]]:
    """The program the cell shipped and the evaluation context its test run used."""
    if outcome.settings.optimizer == "progopt":
        from optimizer.artifact import load_artifact

        return load_artifact(folder / "artifact.json", program=task.program_class), {}
    from optimizer.sweep.baselines import dspy_adapter

    program = task.program_class()
    program.load(str(folder / "dspy_program.json"))
    return program, {"lm": task.pool.lm(outcome.settings.models[0]), "adapter": dspy_adapter(outcome.settings)}


def merged(test: dict[str, Any], scores: list[float], extra: Evaluation, commit: str) -> dict[str, Any]:
    """The first run's test summary ``test`` (over ``len(scores) - len(extra.results)`` rows) with ``extra``'s
    rows added; see the module docstring for which fields are recomputed, weighted, summed or kept."""
    new = extra.summary()
    n0, n1 = test["examples"], new.examples
    out = {**test, "examples": n0 + n1, "score": sum(scores) / len(scores), "score_ci": list(bootstrap_ci(scores))}
    out.update({k: (test[k] * n0 + getattr(new, k) * n1) / (n0 + n1) for k in WEIGHTED})
    out.update({k: test[k] + getattr(new, k) for k in SUMMED})
    if test.get("mean_confidence") is not None and new.mean_confidence is not None:
        out["mean_confidence"] = (test["mean_confidence"] * n0 + new.mean_confidence * n1) / (n0 + n1)
    out["latency_examples"] = test.get("latency_examples", n0)
    out["topped_up"] = {"rows": [n0, n0 + n1], "date": dt.date.today().isoformat(), "commit": commit}
    return out


def rescored(test: dict[str, Any], scores: list[float], new: Evaluation, commit: str) -> dict[str, Any]:
    """``new``'s full test summary in place of ``test``, with the old score and how many of ``scores`` it
    reproduced kept under ``superseded``."""
    summary = new.summary().model_dump(exclude={"by_model", "by_step"})
    same = sum(abs(a - r.score) < 1e-9 for a, r in zip(scores, new.results, strict=False))
    return {**summary, "superseded": {"score": test.get("score"), "aggregate": test.get("aggregate", "mean"),
                                      "examples": len(scores), "reproduced": same,
                                      "date": dt.date.today().isoformat(), "commit": commit}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="the sweep's output folder (with cells/)")
    parser.add_argument("--only", action="append", default=[], help="KEY=V1,V2 filter, as `progopt sweep --only`")
    parser.add_argument("--rescore", action="store_true",
                        help="re-run all test rows of corpus-metric cells that have no rows (see above)")
    args = parser.parse_args()
    runtime.configure()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    outcomes = [o for f in sorted((args.results / "cells").iterdir()) if (o := read_outcome(f)) and o.state == "done"]
    kept = {s.cell_id() for s in select([o.settings for o in outcomes], args.only)}
    for listed in track([o for o in outcomes if o.cell_id in kept], description="topping up"):
        folder = args.results / "cells" / listed.cell_id
        outcome = read_outcome(folder) or listed  # read again: another process may have topped it up since
        task = cell_task(outcome.settings)
        p = outcome.settings.program
        test = task.load(p.test or "test", outcome.settings.test_limit)
        done = len(outcome.test_scores)
        if args.rescore:
            if aggregate_name(task.metric) == "mean" or (outcome.test or {}).get("rows"):
                continue
            program, context = shipped_program(outcome, folder, task)
            new = evaluate(program, test, task.metric, description="test", show_progress=False, **context)
            outcome.test = rescored(outcome.test or {}, outcome.test_scores, new, commit)
            outcome.test_scores = [r.score for r in new.results]
            write_json(folder / OUTCOME, outcome.model_dump(mode="json"))
            old = outcome.test["superseded"]
            print(f"{outcome.cell_id} {outcome.label}: {old['aggregate']} {old['score']:.4f} -> "
                  f"{outcome.test['aggregate']} {outcome.test['score']:.4f} ({old['reproduced']}/{done} reproduced)")
            continue
        if done >= len(test):
            continue
        program, context = shipped_program(outcome, folder, task)
        extra = evaluate(program, test[done:], task.metric, description="test", show_progress=False, **context)
        scores = [*outcome.test_scores, *(r.score for r in extra.results)]
        outcome.test = merged(outcome.test or {}, scores, extra, commit)
        outcome.test_scores = scores
        write_json(folder / OUTCOME, outcome.model_dump(mode="json"))
        print(f"{outcome.cell_id} {outcome.label}: {done} -> {len(scores)} rows, score {outcome.test['score']:.4f}")


if __name__ == "__main__":
    main()
