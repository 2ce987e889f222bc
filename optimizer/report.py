"""Human-readable tables of evaluations (rich)."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console
from rich.table import Table

from optimizer.summary import Summary


def evaluation_table(title: str, rows: Mapping[str, Summary]) -> Table:
    """One row per label (a model, a variant) from :meth:`Evaluation.summary` values."""
    table = Table(title=title)
    for col in ("", "score", "95% CI", "valid", "cost/ex (US$)", "p50 s", "p95 s", "LM calls", "cached"):
        table.add_column(col, justify="left" if not col else "right")
    for label, s in rows.items():
        low, high = s.score_ci
        table.add_row(label, f"{s.score:.3f}", f"[{low:.3f}, {high:.3f}]", f"{s.validity_rate:.1%}",
                      f"{s.cost_per_example:.2e}", f"{s.latency_p50_s:.3f}", f"{s.latency_p95_s:.3f}",
                      str(s.lm_calls), str(s.cached_calls))
    return table


def print_table(table: Table) -> None:
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)
