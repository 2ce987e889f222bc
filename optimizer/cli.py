"""``progopt``: a thin command line over the Python API."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from optimizer.data import DataError


def _mapping(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        if not sep:
            raise SystemExit(f"--map expects FIELD=COLUMN, got {pair!r}")
        out[field] = column
    return out


def add_task_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments that pick a program, its data and its metric (shared by evaluate and compile)."""
    p.add_argument("program", help="path/file.py:Class or module:Class")
    p.add_argument("--data", help="JSONL/CSV file (default: the program's TASK split)")
    p.add_argument("--split", default="test", help="split of the program's TASK when --data is not given")
    p.add_argument("--inputs", nargs="+", help="input field names (default: the program's TASK)")
    p.add_argument("--map", nargs="*", default=[], metavar="FIELD=COLUMN", help="rename file columns")
    p.add_argument("--metric", help="built-in name (exact_match:FIELD, entity_f1) or file.py:function")
    p.add_argument("--models", nargs="+", help="model names (default: the embedded local pool)")
    p.add_argument("--api-base", help="API base URL for non-local models")
    p.add_argument("--limit", type=int, help="use the first N examples")
    p.add_argument("--cache-dir", help="DSPy response cache directory (default: ~/.cache/progopt/dspy)")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from optimizer.evaluate import evaluate
    from optimizer.report import evaluation_table, print_table
    from optimizer.tasks import resolve_task

    task = resolve_task(args)
    examples = task.load(args.data or args.split, args.limit)
    summaries = {}
    for name in task.pool.names:
        ev = evaluate(task.program_class(), examples, task.metric, lm=task.pool.lm(name), description=name)
        summaries[name] = ev.summary()
    print_table(evaluation_table(f"{args.program} on {len(examples)} examples", summaries))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(summaries, fh, indent=2)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="progopt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="evaluate a program on each model of the pool")
    add_task_arguments(ev)
    ev.add_argument("--json", help="also write the per-model summaries to this file")
    ev.set_defaults(func=_cmd_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from optimizer import runtime

    runtime.configure(getattr(args, "cache_dir", None))
    try:
        return args.func(args)
    except DataError as exc:
        print(f"progopt: data error: {exc}", file=sys.stderr)
        return 2
    except (ImportError, ValueError, KeyError) as exc:
        print(f"progopt: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
