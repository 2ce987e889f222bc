"""progopt's cells against the best DSPy optimizer of the same program and seed, on the same test examples:
the lead and its paired bootstrap CI (the second table of a sweep's report, and its forest plot).

- **DSPy's best** is, per program and seed, the DSPy optimizer cell with the highest test score (``ZeroShot``
  is a baseline, not an optimizer): chosen on test, the choice most favourable to DSPy.
- **Paired**: every cell of a program evaluates the same test split in the same order (the sweep's splits are
  fixed; ``evaluate`` returns results in input order), so the lead is the mean of per-example differences,
  and its CI is a percentile bootstrap over them: the CI of the difference itself. Two marginal CIs can
  overlap while it excludes 0; it is wide when the two programs miss different examples.
- **Over seeds** the seeds share their test examples, so the bootstrap resamples examples, each carrying its
  mean over the seeds (:func:`seed_means`; the main table's CIs do the same). Pooling every (seed, example)
  pair as if independent counted each example once per seed and narrowed the CI (by up to √seeds); the
  seed-to-seed variation of the optimizers themselves is not in the CI either way.
- **Corpus metrics** (micro F1): when both cells' test summaries keep their rows under a known aggregate
  (:data:`optimizer.statistics.AGGREGATES`), the lead is the difference of the aggregates (mean over seeds),
  and the bootstrap resamples examples for both at once (:func:`optimizer.statistics.mean_paired_difference`).
- A progopt cell whose test scores do not align with its rival's (another length) is left out, never
  mis-paired.

>>> table = markdown(leads(report.outcomes(Path("experiments/results/vs-dspy-2026-11-30"))))
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optimizer.statistics import AGGREGATES, bootstrap_ci, mean_paired_difference
from optimizer.sweep.cell import CellOutcome

BASELINE = "ZeroShot"  # a DSPy cell that compiles nothing: never "DSPy's best optimizer"


@dataclass(frozen=True)
class Lead:
    """One progopt setting (its cells over seeds) against DSPy's best optimizer of each of those seeds."""

    program: str
    setting: str  # the progopt cells' label, e.g. progopt@1xdspy-max
    rivals: tuple[tuple[int, str, float], ...]  # per seed: (seed, DSPy's best label, its test score)
    progopt: float  # mean test score over the seeds
    lead: float  # mean per-example difference, progopt minus DSPy's best
    ci: tuple[float, float]


def seed_means(runs: Sequence[Sequence[float]]) -> list[float]:
    """Each test example's mean over ``runs`` (one per seed) that scored the same examples in the same order: the
    unit a bootstrap over seeds resamples. Raises ValueError when the runs differ in length."""
    if len({len(run) for run in runs}) > 1:
        raise ValueError(f"runs over seeds score different test examples ({sorted({len(r) for r in runs})})")
    return np.mean(np.asarray(runs, dtype=float), axis=0).tolist() if runs else []


def _split(cell: CellOutcome) -> tuple[object, int, int | None]:
    """What decides a cell's test examples and their order: program and data, test size; with the seed, the
    DSPy rival it is paired with."""
    return cell.settings.program, cell.settings.seed, cell.settings.test_limit


def best_dspy(cells: list[CellOutcome]) -> dict[tuple[object, int, int | None], CellOutcome]:
    """Per program, seed and test split: the DSPy optimizer cell with the highest test score (ties: the first
    in ``cells``' order)."""
    best: dict[tuple[object, int, int | None], CellOutcome] = {}
    for cell in cells:
        if cell.settings.optimizer in ("progopt", BASELINE) or cell.state != "done" or not cell.test:
            continue
        key = _split(cell)
        if key not in best or cell.test["score"] > best[key].test["score"]:
            best[key] = cell
    return best


def leads(cells: list[CellOutcome]) -> list[Lead]:
    """Every progopt setting with a DSPy rival on at least one seed, sorted by program and setting."""
    rivals = best_dspy(cells)
    paired: dict[str, list[tuple[CellOutcome, CellOutcome]]] = defaultdict(list)
    for cell in cells:
        if cell.settings.optimizer != "progopt" or cell.state != "done" or not cell.test_scores:
            continue
        rival = rivals.get(_split(cell))
        if rival is not None and len(rival.test_scores) == len(cell.test_scores):
            paired[cell.group].append((cell, rival))
    out = []
    for pairs in paired.values():
        pairs.sort(key=lambda pair: pair[0].settings.seed)
        lead, ci = _lead(pairs)
        first = pairs[0][0].settings
        out.append(Lead(program=first.program.name, setting=first.label(),
                        rivals=tuple((mine.settings.seed, theirs.label, float(theirs.test["score"]))
                                     for mine, theirs in pairs),
                        progopt=float(np.mean([mine.test["score"] for mine, _ in pairs])),
                        lead=lead, ci=ci))
    return sorted(out, key=lambda lead: (lead.program, lead.setting))


def corpus_rows(cell: CellOutcome) -> tuple[str, list[list[float]]] | None:
    """The cell's test rows under a known corpus aggregate, else None (a mean metric, or an older cell)."""
    test = cell.test or {}
    name, rows = test.get("aggregate", "mean"), test.get("rows") or []
    return (name, rows) if name != "mean" and name in AGGREGATES and len(rows) == len(cell.test_scores) else None


def _lead(pairs: Sequence[tuple[CellOutcome, CellOutcome]]) -> tuple[float, tuple[float, float]]:
    """The mean lead over the pairs and its CI: of the corpus aggregate when every cell has its rows, else of
    per-example score differences (each example's mean over the seeds)."""
    rows = [(corpus_rows(mine), corpus_rows(theirs)) for mine, theirs in pairs]
    names = {r[0] for pair in rows for r in pair if r is not None}
    if all(a is not None and b is not None for a, b in rows) and len(names) == 1:
        return mean_paired_difference([(a[1], b[1]) for a, b in rows if a and b], AGGREGATES[names.pop()])
    diffs = seed_means([np.subtract(mine.test_scores, theirs.test_scores) for mine, theirs in pairs])
    return float(np.mean(diffs)), bootstrap_ci(diffs)


def markdown(rows: list[Lead]) -> str:
    """The head-to-head table with its reading note; empty when no progopt cell has a DSPy rival."""
    if not rows:
        return ""
    head = ("| program | progopt setting | seeds | progopt test | DSPy's best optimizer per seed (test) | lead "
            "| 95% CI of the lead, paired |\n|" + " --- |" * 7)
    body = "\n".join(
        f"| {r.program} | {r.setting} | {len(r.rivals)} | {r.progopt:.3f} | "
        + "; ".join(f"seed {seed}: {label} {score:.3f}" for seed, label, score in r.rivals)
        + f" | {100 * r.lead:+.1f} | [{100 * r.ci[0]:+.1f}, {100 * r.ci[1]:+.1f}] |" for r in rows)
    note = ("Lead and CI in points (hundredths of the score). DSPy's best: per seed, the DSPy optimizer cell with "
            "the highest test score (ZeroShot excluded), the choice most favourable to DSPy. The CI is a "
            "percentile bootstrap over per-example differences on the same test examples (over seeds, each "
            "example's difference averaged over the seeds); a CI that excludes 0 is a lead (or a loss) beyond "
            "the test sample's noise.")
    return f"## progopt against DSPy's best optimizer, same seed and test examples\n\n{head}\n{body}\n\n{note}\n"


def plot(rows: list[Lead], path: Path) -> Path:
    """A forest plot: each progopt setting's lead over DSPy's best with its paired CI, one band per program,
    a line at 0 (equal) and at +10 points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.42 * len(rows) + 1.6))
    ys = np.arange(len(rows))[::-1]
    programs = list(dict.fromkeys(r.program for r in rows))
    for y, r in zip(ys, rows, strict=True):
        color = plt.get_cmap("tab10")(programs.index(r.program) % 10)
        ax.errorbar(100 * r.lead, y, xerr=[[100 * (r.lead - r.ci[0])], [100 * (r.ci[1] - r.lead)]], fmt="o",
                    color=color, capsize=3)
    names = [f"{r.program}  {r.setting.removeprefix('progopt@').replace('xdspy-max', 'x')}  "
             f"({len(r.rivals)} seed{'s' if len(r.rivals) > 1 else ''})" for r in rows]
    ax.set_yticks(ys, names, fontsize=8)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.axvline(10, color="gray", linewidth=0.8, linestyle="--")
    ax.set_xlabel("lead over DSPy's best optimizer, test points (95% CI paired by example)")
    ax.set_title("progopt against DSPy's best optimizer (same seed, same test examples)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
