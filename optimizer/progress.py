"""Rich progress bars for long work; silent when not wanted or not on a terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n=1, status="", completed=None)``; shows a bar with count and ETA when ``enabled``."""
    if not enabled:
        yield lambda *a, **k: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[status]}"))
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(description, total=total, status="")

        def advance(n: int = 1, status: str = "", completed: int | None = None) -> None:
            if completed is not None:
                bar.update(task, completed=completed, status=status)
            else:
                bar.update(task, advance=n, status=status)

        yield advance
