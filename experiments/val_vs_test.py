"""How far does a compile's own estimate of its chosen program overstate the test score? (No LM calls.)

Reads every finished progopt cell of a sweep folder (``cells/<id>/result.json`` and ``outcome.json``) and
prints, per cell, the chosen variant's full-validation score, its final-selection score (validation plus
held-out training examples, ``+final`` cells only) and its test score, then the mean gap of each estimate
over test with a 95% bootstrap CI (scipy). Cells of one task share variants and examples, so the CI
treats them as independent and is optimistic about its own width.

    .venv/bin/python experiments/val_vs_test.py experiments/results/vs-dspy-2026-11-30
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import bootstrap


def cell_rows(folder: Path) -> list[tuple[str, int, str, float, float | None, float]]:
    """(program, seed, label, validation, final or None, test) for each finished progopt cell."""
    rows = []
    for outcome_file in sorted(folder.glob("cells/*/outcome.json")):
        outcome = json.loads(outcome_file.read_text())
        settings = outcome["settings"]
        if settings["optimizer"] != "progopt" or outcome["state"] != "done":
            continue
        result = json.loads((outcome_file.parent / "result.json").read_text())
        scores = {t.get("stage"): t["summary"]["score"] for t in result["trials"]
                  if t["variant_key"] == result["chosen"]}
        rows.append((settings["program"]["ref"].split(":")[-1], settings["seed"], outcome["label"],
                     scores["full"], scores.get("final"), outcome["test"]["score"]))
    return sorted(rows)


def gap_line(name: str, gaps: list[float]) -> str:
    """Mean gap in points with its bootstrap CI, and how many cells overstate test."""
    if len(gaps) < 2:
        return f"{name}: {len(gaps)} cell(s), too few for a CI"
    ci = bootstrap((np.array(gaps),), np.mean, confidence_level=0.95, method="percentile",
                   random_state=0).confidence_interval
    over = sum(g > 0 for g in gaps)
    return (f"{name}: mean {100 * np.mean(gaps):+.1f} points [{100 * ci.low:+.1f}, {100 * ci.high:+.1f}], "
            f"{over} of {len(gaps)} cells above test")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a sweep folder with cells/<id>/result.json")
    rows = cell_rows(parser.parse_args().folder)
    print("| program | seed | cell | validation | final selection | test |")
    print("| --- | --- | --- | --- | --- | --- |")
    for program, seed, label, val, final, test in rows:
        final_text = "-" if final is None else f"{final:.3f}"
        print(f"| {program} | {seed} | {label} | {val:.3f} | {final_text} | {test:.3f} |")
    print()
    print(gap_line("validation - test", [val - test for _, _, _, val, _, test in rows]))
    print(gap_line("final selection - test", [final - test for *_, final, test in rows if final is not None]))
    print(gap_line("validation - test, the same cells", [val - test for *_, val, final, test in rows
                                                         if final is not None]))


if __name__ == "__main__":
    main()
