"""``progopt sweep``: run a YAML matrix of compiles (and DSPy optimizer baselines), resumably, on this machine
or a Ray cluster; ``progopt sweep report DIR`` rebuilds the tables and plots from the stored cells;
``progopt sweep status DIR`` shows each cell's state (``stale``: its process is gone; a rerun takes it again).

    progopt sweep experiments/sweeps/quickstart.yaml --workers 2
    progopt sweep experiments/sweeps/quickstart.yaml --executor ray --address 127.0.0.1:6379
    progopt sweep experiments/sweeps/vs-dspy.yaml --only seed=0 --only program=Sentiment
    progopt sweep report out/sweeps/quickstart
    progopt sweep status experiments/results/vs-dspy-2026-11-30 --only seed=1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from optimizer.sweep.report import write_report
    from optimizer.sweep.run import run_sweep

    if args.target in ("report", "status"):
        if not args.folder or not Path(args.folder, "cells").is_dir():
            raise ValueError(f"progopt sweep {args.target}: {args.folder!r} is not a sweep output folder "
                             "(no cells/ in it)")
        if args.target == "status":
            return _status(Path(args.folder), args.only)
        paths = write_report(Path(args.folder))
        print(Path(paths["md"]).read_text(encoding="utf-8"))
        return 0
    if args.folder:
        raise ValueError(f"unexpected argument {args.folder!r} (did you mean `progopt sweep report DIR`?)")
    if args.workers < 1:
        raise ValueError("--workers must be at least 1")
    output = run_sweep(args.target, workers=args.workers, executor=args.executor, address=args.address,
                       cpus_per_cell=args.cpus_per_cell, storage=args.storage, tracking_uri=args.tracking_uri,
                       show_progress=not args.quiet, only=args.only)
    print((output / "report.md").read_text(encoding="utf-8"))
    print(json.dumps({"output": str(output), "report": str(output / "report.md"), "plot": str(output / "report.png")}))
    return _failed(args.target, args.only, output)


def _failed(path: str, only: list[str], output: Path) -> int:
    """1 (with each failed cell named) when a cell this run selected stored a failure, else 0: a script or CI
    running a sweep sees a failed cell in the exit status, as it would a failed compile."""
    from optimizer.sweep.config import load_sweep, select
    from optimizer.sweep.report import outcomes

    selected = {c.cell_id() for c in select(load_sweep(path)[1], only)}
    failed = [c for c in outcomes(output) if c.cell_id in selected and c.state != "done"]
    for cell in failed:
        print(f"progopt: cell {cell.cell_id} ({cell.label}) failed: {cell.error}", file=sys.stderr)
    return 1 if failed else 0


def _status(folder: Path, only: list[str]) -> int:
    from rich.console import Console

    from optimizer.sweep.config import CELLS_FILE, load_cells_settings, select
    from optimizer.sweep.run import live_table

    if not (folder / CELLS_FILE).exists():
        raise ValueError(f"progopt sweep status: {folder} has no {CELLS_FILE} (the sweep never started there)")
    Console(width=160).print(live_table(folder, select(load_cells_settings(folder), only)))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a sweep file (a matrix of compiles and DSPy baselines); "
                       "`sweep report DIR` rebuilds its tables and plots, `sweep status DIR` shows its cells")
    p.add_argument("target", help="the sweep YAML file, or `report` or `status`")
    p.add_argument("folder", nargs="?", help="with `report` or `status`: the sweep's output folder")
    p.add_argument("--workers", type=int, default=1, help="cells at once on this machine, in separate processes")
    p.add_argument("--executor", choices=["local", "ray"], default="local")
    p.add_argument("--address", help="Ray cluster address (default: start or join a local one)")
    p.add_argument("--cpus-per-cell", type=float, default=1.0, help="Ray CPUs per cell task (default 1)")
    p.add_argument("--storage", help="Optuna storage URL shared by every worker and node (e.g. PostgreSQL)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlflow.db; 'none' to disable)")
    p.add_argument("--only", action="append", default=[], metavar="KEY=V1,V2",
                   help="run only the cells matching (repeatable; keys: program, optimizer, seed, models), "
                   "e.g. --only seed=0 --only optimizer=ZeroShot,GEPA; also filters `status`")
    p.add_argument("--quiet", action="store_true", help="no live table")
    p.set_defaults(func=run)
