"""A sweep's results from its stored cell outcomes: a Markdown and CSV table per group of cells that differ
only by seed, progopt's lead over DSPy's best optimizer (:mod:`~optimizer.sweep.head_to_head`), and two plots
(test score vs LM calls per program, test score vs cost per example).

>>> rows = group_rows(outcomes(Path("out/sweeps/quickstart")))
>>> write_report(Path("out/sweeps/quickstart"))
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from optimizer.statistics import AGGREGATES, bootstrap_ci, mean_score_ci
from optimizer.sweep import head_to_head
from optimizer.sweep.cell import CellOutcome, read_outcome

COLUMNS = ("program", "optimizer", "models", "budget", "seeds", "test score", "95% CI", "LM calls",
           "cost / 1k ex (US$)", "p50 s", "p95 s", "validity", "compile s", "overhead", "failed")


def outcomes(output: Path) -> list[CellOutcome]:
    """Every finished cell under ``output/cells``, in a stable order."""
    found = [read_outcome(folder) for folder in sorted((output / "cells").glob("*")) if folder.is_dir()]
    return [o for o in found if o is not None]


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _ci(done: list[CellOutcome]) -> tuple[float, float]:
    """The group's test CI over its seeds: of the corpus aggregate when every cell keeps its rows
    (:func:`~optimizer.sweep.head_to_head.corpus_rows`), else of per-example scores (each example's mean)."""
    rows = [head_to_head.corpus_rows(c) for c in done]
    names = {r[0] for r in rows if r is not None}
    if rows and all(r is not None for r in rows) and len(names) == 1:
        return mean_score_ci([r[1] for r in rows if r], AGGREGATES[names.pop()])
    scores = head_to_head.seed_means([c.test_scores for c in done if c.test_scores])
    return bootstrap_ci(scores) if scores else (float("nan"), float("nan"))


def group_rows(cells: list[CellOutcome]) -> list[dict[str, Any]]:
    """One row per group (settings minus seed): means over seeds; the CI resamples test examples, each with its
    mean over the seeds (:func:`~optimizer.sweep.head_to_head.seed_means`: the seeds share their examples)."""
    groups: dict[str, list[CellOutcome]] = defaultdict(list)
    for cell in cells:
        groups[cell.group].append(cell)
    rows = []
    for members in groups.values():
        done = [c for c in members if c.state == "done" and c.test]
        first = members[0].settings
        low, high = _ci(done)
        rows.append({
            "program": first.program.name, "optimizer": first.optimizer, "label": first.label(),
            "models": ",".join(m.split("/")[-1] for m in first.models),
            "budget": first.budget if first.optimizer == "GEPA" or (first.optimizer == "progopt"
                                                                    and not first.budget_from) else None,
            "seeds": len(done), "test score": _mean([c.test["score"] for c in done]), "ci": (low, high),
            "LM calls": _mean([c.compile_calls for c in done]),
            "cost / 1k ex (US$)": 1000 * _mean([c.test["cost_per_example"] for c in done]),
            "p50 s": _mean([c.test["latency_p50_s"] for c in done]),
            "p95 s": _mean([c.test["latency_p95_s"] for c in done]),
            "validity": _mean([c.test["validity_rate"] for c in done]),
            "compile s": _mean([c.compile_seconds for c in done]),
            "overhead": _mean([1 - c.compile_lm_seconds / c.compile_seconds for c in done
                               if c.compile_lm_seconds is not None and c.compile_seconds > 1]),
            "failed": len(members) - len(done),
        })
    return sorted(rows, key=lambda r: (r["program"], r["optimizer"], r["label"]))


def _cells(row: dict[str, Any]) -> list[str]:
    low, high = row["ci"]
    fmt = lambda v, spec: "n/a" if v is None or v != v else format(v, spec)  # noqa: E731 - NaN-safe
    return [row["program"], row["label"], row["models"], fmt(row["budget"], "d") if row["budget"] else "-",
            str(row["seeds"]), fmt(row["test score"], ".3f"), f"[{fmt(low, '.3f')}, {fmt(high, '.3f')}]",
            fmt(row["LM calls"], ".0f"), fmt(row["cost / 1k ex (US$)"], ".2e"), fmt(row["p50 s"], ".3f"),
            fmt(row["p95 s"], ".3f"), fmt(row["validity"], ".0%"), fmt(row["compile s"], ".0f"),
            fmt(row["overhead"], ".0%"), str(row["failed"])]


def markdown(rows: list[dict[str, Any]], title: str) -> str:
    header = "| " + " | ".join(COLUMNS) + " |\n|" + " --- |" * len(COLUMNS)
    body = "\n".join("| " + " | ".join(_cells(r)) + " |" for r in rows)
    note = ("Test score: mean over seeds; 95% CI: percentile bootstrap over the test examples, each with its mean "
            "over the seeds (the seeds share their test examples). LM calls "
            "(mean over seeds): for progopt, the calls that reached a model during the compile (a request repeated "
            "within the compile is served by its response cache and not counted); for DSPy optimizers, every LM "
            "request of the compile, repeats included (on a fresh cache at most this many reach a model). Cost and "
            "latency: the chosen program on the test split. Overhead: the share of compile wall time spent outside "
            "LM calls.")
    return f"# {title}\n\n{header}\n{body}\n\n{note}\n"


def csv_text(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    writer.writerows(_cells(r) for r in rows)
    return out.getvalue()


def _series(row: dict[str, Any]) -> str:
    """A row's series in the score-vs-calls panel: a DSPy optimizer on one model, or a progopt setting with
    its budgets joined (``progopt@0.5xdspy-max+final5`` -> ``progopt+final5``)."""
    return re.sub(r"@[^+(]*", "", row["label"]) if row["optimizer"] == "progopt" else row["label"]


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Test score vs LM calls, one panel per program, one series per optimizer setting (budgets joined by a
    line, legend under the panel); last, test score vs cost per example, one color per program with
    progopt's points as stars. Up to three panels a row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    programs = sorted({r["program"] for r in rows})
    cols = min(3, len(programs) + 1)
    grid_rows = -(-(len(programs) + 1) // cols)
    fig, axes = plt.subplots(grid_rows, cols, figsize=(6 * cols, 6.5 * grid_rows), squeeze=False)
    panels = list(axes.flat)
    for ax, program in zip(panels, programs, strict=False):
        series: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            if r["program"] == program:
                series[_series(r)].append(r)
        for index, (name, points) in enumerate(sorted(series.items())):
            points.sort(key=lambda r: r["LM calls"])
            xs, ys = [p["LM calls"] for p in points], [p["test score"] for p in points]
            errs = np.array([[y - p["ci"][0] for y, p in zip(ys, points, strict=True)],
                             [p["ci"][1] - y for y, p in zip(ys, points, strict=True)]])
            star = name.startswith("progopt")
            ax.errorbar(xs, ys, yerr=np.nan_to_num(errs), color=plt.get_cmap("tab20")(index % 20),
                        marker="*" if star else "o", markersize=9 if star else 5, capsize=3, label=name)
        ax.set(title=program, xlabel="LM calls during the compile", ylabel="test score")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    ax = panels[len(programs)]
    colors = dict(zip(programs, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4, strict=False))
    for r in rows:
        ax.scatter(r["cost / 1k ex (US$)"] / 1000, r["test score"], color=colors[r["program"]],
                   marker="*" if r["optimizer"] == "progopt" else "o", s=90 if r["optimizer"] == "progopt" else 25)
    for program, color in colors.items():
        ax.scatter([], [], color=color, label=program)
    ax.scatter([], [], color="gray", marker="*", s=90, label="progopt (stars)")
    ax.set(title="quality vs cost", xlabel="cost per example (US$)", ylabel="test score")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    for ax in panels[len(programs) + 1:]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(output: Path, title: str | None = None) -> dict[str, Path]:
    """Rebuild ``report.md`` (both tables), ``report.csv`` (the first), ``report.png`` and, when progopt cells
    have DSPy rivals, ``head_to_head.png`` in ``output`` from its stored cells."""
    cells = outcomes(output)
    rows = group_rows(cells)
    title = title or f"Sweep {output.name}"
    paths = {"md": output / "report.md", "csv": output / "report.csv", "png": output / "report.png",
             "leads": output / "head_to_head.png"}
    leads = head_to_head.leads(cells)
    lead_table = head_to_head.markdown(leads)
    if leads:
        head_to_head.plot(leads, paths["leads"])
        lead_table += f"\n![progopt's leads]({paths['leads'].name})\n"
    paths["md"].write_text(markdown(rows, title) + (f"\n{lead_table}" if lead_table else ""), encoding="utf-8")
    paths["csv"].write_text(csv_text(rows), encoding="utf-8")
    if rows:
        plot(rows, paths["png"])
    return paths
