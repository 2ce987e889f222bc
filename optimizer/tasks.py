"""Resolve what a command works on: program class, metric, data and model pool, from CLI arguments
or the program module's defaults (its ``TASK`` and ``metric``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dspy

from optimizer import refs
from optimizer.data import Task, load_examples
from optimizer.errors import UsageError
from optimizer.metrics import BUILTIN
from optimizer.models import ModelPool


def resolve_metric(ref: str) -> Callable:
    """``exact_match:FIELD``, ``entity_f1[:FIELD]``, or ``file.py:function`` / ``module:function``."""
    name, _, arg = ref.partition(":")
    if name in BUILTIN:
        return BUILTIN[name](arg) if arg else BUILTIN[name]()  # type: ignore[call-arg]
    return refs.resolve(ref)


@dataclass
class TaskSetup:
    program_ref: str
    program_class: type[dspy.Module]
    metric: Callable
    pool: ModelPool
    task: Task | None
    inputs: list[str]
    mapping: dict[str, str]

    def load(self, split_or_path: str, limit: int | None = None) -> list[dspy.Example]:
        """A split of the program's TASK, or any JSONL/CSV path."""
        if Path(split_or_path).suffix in {".jsonl", ".csv", ".tsv", ".ndjson"}:
            return load_examples(split_or_path, inputs=self.inputs, mapping=self.mapping, limit=limit)
        if self.task is None:
            raise ValueError(f"{self.program_ref} defines no TASK: pass --data FILE and --inputs")
        return self.task.load(split_or_path, limit)


def parse_mapping(pairs: Sequence[str]) -> dict[str, str]:
    """``--map FIELD=COLUMN`` pairs as a dict (UsageError for a pair without ``=``)."""
    out = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        if not sep:
            raise UsageError("expects FIELD=COLUMN", f"--map {pair}")
        out[field] = column
    return out


def resolve_task(args: argparse.Namespace) -> TaskSetup:
    program_class = refs.resolve(args.program)
    module = refs.module_of(args.program)
    task = getattr(module, "TASK", None)
    metric = resolve_metric(args.metric) if args.metric else getattr(module, "metric", None)
    if metric is None:
        raise ValueError(f"{args.program}: no --metric given and the module defines no `metric`")
    inputs = args.inputs or (task.inputs if task else None)
    if not inputs:
        raise ValueError("--inputs is required when the program module defines no TASK")
    mapping = parse_mapping(args.map) if args.map else (task.mapping if task else {})
    pool = ModelPool.from_names(args.models, api_base=args.api_base) if args.models else ModelPool.default()
    return TaskSetup(args.program, program_class, metric, pool, task, list(inputs), mapping)
