"""``progopt evaluate``: evaluate a program on each model of the pool."""

from __future__ import annotations

import argparse
import json


def add_task_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments that pick a program, its data, its metric and the model pool (evaluate and compile)."""
    p.add_argument("program", help="path/file.py:Class or module:Class")
    p.add_argument("--data", help="JSONL/CSV file (default: the program's TASK split)")
    p.add_argument("--split", default="test", help="split of the program's TASK when --data is not given")
    p.add_argument("--inputs", nargs="+", help="input field names (default: the program's TASK)")
    p.add_argument("--map", nargs="*", default=[], metavar="FIELD=COLUMN", help="rename file columns")
    p.add_argument("--metric", help="built-in (exact_match:FIELD, entity_f1[:FIELD]) or file.py:function")
    p.add_argument("--models", nargs="+", help="model names (default: the embedded local pool)")
    p.add_argument("--api-base", help="API base URL for non-local models")
    p.add_argument("--limit", type=int, help="use the first N examples")
    p.add_argument("--num-threads", type=int, default=8,
                   help="concurrent examples on API models (default 8; local models run one call at a time)")


def run(args: argparse.Namespace) -> int:
    from optimizer.evaluate import evaluate
    from optimizer.report import evaluation_table, print_table
    from optimizer.tasks import resolve_task

    task = resolve_task(args)
    examples = task.load(args.data or args.split, args.limit)
    summaries = {}
    for name in task.pool.names:
        threads = args.num_threads if task.pool[name].provider != "local" else 1
        ev = evaluate(task.program_class(), examples, task.metric, lm=task.pool.lm(name), threads=threads,
                      description=name)
        summaries[name] = ev.summary()
    print_table(evaluation_table(f"{args.program} on {len(examples)} examples", summaries))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(summaries, fh, indent=2)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a program on each model of the pool")
    add_task_arguments(p)
    p.add_argument("--json", help="also write the per-model summaries to this file")
    p.set_defaults(func=run)
