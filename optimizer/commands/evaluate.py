"""``progopt evaluate``: evaluate a program on each model of the pool."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from optimizer.commands.options import count, model_name, positive_int
from optimizer.outputs import check_output, write_atomic


def add_task_arguments(p: argparse.ArgumentParser,
                       split_help: str = "split of the program's TASK when --data is not given") -> None:
    """Arguments that pick a program, its data, its metric and the model pool (evaluate and compile)."""
    p.add_argument("program", help="path/file.py:Class or module:Class")
    p.add_argument("--data", help="JSONL/CSV file (default: the program's TASK split)")
    p.add_argument("--split", default="test", help=split_help)
    p.add_argument("--inputs", nargs="+", help="input field names (default: the program's TASK)")
    p.add_argument("--map", nargs="*", default=[], metavar="FIELD=COLUMN", help="rename file columns")
    p.add_argument("--metric", help="built-in (exact_match:FIELD, entity_f1[:FIELD]) or file.py:function")
    p.add_argument("--models", nargs="+", type=model_name,
                   help="embedded model names or LiteLLM provider/model strings (default: the embedded local pool)")
    p.add_argument("--api-base", help="API base URL for non-local models")
    p.add_argument("--limit", type=count, help="use the first N examples")
    p.add_argument("--num-threads", type=positive_int, default=8,
                   help="concurrent examples on API models (default 8; local models run one call at a time)")


def input_paths(args: argparse.Namespace) -> list[Path]:
    """The data files a command reads (outputs must never replace one of them)."""
    return [Path(v) for v in (getattr(args, k, None) for k in ("data", "train", "val")) if v]


def run(args: argparse.Namespace) -> int:
    from optimizer.evaluate import evaluate
    from optimizer.report import evaluation_table, print_table
    from optimizer.tasks import resolve_task

    if args.json:
        check_output(Path(args.json), "--json", input_paths(args))
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
        write_atomic(Path(args.json), json.dumps({k: v.model_dump() for k, v in summaries.items()}, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a program on each model of the pool")
    add_task_arguments(p)
    p.add_argument("--json", help="also write the per-model summaries to this file")
    p.set_defaults(func=run)
