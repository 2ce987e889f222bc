"""What every cell of a sweep needs before the first one starts, resolved as the cells would resolve it: each
program reference (the user typed it in the sweep file, so :func:`optimizer.refs.resolve`), its metric, its
input fields and its data files; each DSPy optimizer's ``optimizer_args``; a DSPy peer for each ``budget_from``.
A cell that could not start would otherwise be a ``failed`` outcome in a sweep that exits 0.

:func:`check_cells` raises :class:`CellCheckError` naming the cell setting at fault; the sweep loader turns it
into a ``SweepConfigError`` with the key path and line where that setting is written."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optimizer.errors import ProgoptError

if TYPE_CHECKING:
    from optimizer.sweep.config import CellSettings, ProgramSettings

DATA_SUFFIXES = {".jsonl", ".ndjson", ".csv", ".tsv"}  # as TaskSetup.load tells a file from a TASK split
SPLITS = ("train", "val", "test")
SWEEP_SET = {"metric", "prompt_model", "task_model", "reflection_lm"}  # make_optimizer passes these itself


class CellCheckError(ProgoptError, ValueError):
    """A cell setting that would stop the cell: ``at`` is its path in the cell's settings (``("program",
    "ref")``, ``("optimizer_args", "k")``), ``value`` what is written there (to find it in the file)."""

    def __init__(self, at: tuple[str, ...], value: Any, message: str):
        self.at, self.value, self.message = at, value, message
        super().__init__(f"{'.'.join(at)}: {message}")


def _program(p: ProgramSettings) -> None:
    """The reference names a ``dspy.Module`` class; a metric, the inputs and each data split can be found."""
    import dspy

    from optimizer import refs
    from optimizer.files import check_regular
    from optimizer.tasks import resolve_metric

    try:
        program = refs.resolve(p.ref)
        module = refs.module_of(p.ref)
    except Exception as exc:  # noqa: BLE001 - importing user code may raise anything
        raise CellCheckError(("program", "ref"), p.ref, f"the program does not resolve ({type(exc).__name__}: "
                             f"{exc})") from None
    if not (isinstance(program, type) and issubclass(program, dspy.Module)):
        raise CellCheckError(("program", "ref"), p.ref, f"{p.ref} is not a dspy.Module class")
    if p.metric:
        try:
            resolve_metric(p.metric)
        except Exception as exc:  # noqa: BLE001 - importing user code may raise anything
            raise CellCheckError(("program", "metric"), p.metric, f"the metric does not resolve "
                                 f"({type(exc).__name__}: {exc})") from None
    elif getattr(module, "metric", None) is None:
        raise CellCheckError(("program", "ref"), p.ref, f"{p.ref}: its module defines no `metric`; give "
                             "program.metric")
    task = getattr(module, "TASK", None)
    if not (p.inputs or (task is not None and task.inputs)):
        raise CellCheckError(("program", "ref"), p.ref, f"{p.ref}: its module defines no TASK; give "
                             "program.inputs")
    for split in SPLITS:
        given = getattr(p, split)
        name = given or split
        if Path(name).suffix not in DATA_SUFFIXES and task is None:
            raise CellCheckError(("program", split) if given else ("program", "ref"), given or p.ref,
                                 f"the {split} data {name!r} is a TASK split, but {p.ref}'s module defines no "
                                 f"TASK; give program.{split} as a .jsonl/.csv/.tsv file")
        file = Path(name) if Path(name).suffix in DATA_SUFFIXES else task.path(name)
        try:
            check_regular(file)
        except OSError as exc:
            raise CellCheckError(("program", split) if given else ("program", "ref"), given or p.ref,
                                 f"the {split} data {file} cannot be read ({exc.strerror or exc})") from None


def _optimizer_args(cell: CellSettings) -> None:
    """Each ``optimizer_args`` key is a keyword of the DSPy optimizer the cell runs (not one the sweep sets)."""
    import dspy

    if cell.optimizer in ("progopt", "ZeroShot") or not cell.optimizer_args:
        return
    params = inspect.signature(getattr(dspy, cell.optimizer)).parameters
    open_ended = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for key in cell.optimizer_args:
        if key in SWEEP_SET or not (open_ended or key in params):
            taken = "is set by the sweep" if key in SWEEP_SET else f"is not an argument of dspy.{cell.optimizer}"
            raise CellCheckError(("optimizer_args", key), None, f"{key!r} {taken}")


def _budget_peers(cell: CellSettings, cells: Sequence[CellSettings]) -> None:
    """``budget_from`` needs a DSPy optimizer cell of the same program and seed (see ``budget_peers``)."""
    if cell.budget_from and not any(c.program == cell.program and c.seed == cell.seed
                                    and c.optimizer not in ("progopt", "ZeroShot") for c in cells):
        raise CellCheckError(("budget_from",), cell.budget_from, f"the sweep runs no DSPy optimizer on "
                             f"{cell.program.ref} with seed {cell.seed} to take the budget from")


def check_cells(cells: Sequence[CellSettings]) -> None:
    """Raise :class:`CellCheckError` for the first setting that would stop a cell (each program checked once)."""
    checked: set[ProgramSettings] = set()
    for cell in cells:
        if cell.program not in checked:
            _program(cell.program)
            checked.add(cell.program)
        _optimizer_args(cell)
        _budget_peers(cell, cells)


def written_at(entries: Sequence[tuple[tuple[Any, ...], dict[str, Any]]], at: tuple[str, ...], value: Any,
               variant_axis: str) -> tuple[Any, ...]:
    """The key path in the sweep file of the first entry (``(key path, settings)``, as the loader lists them)
    that writes cell setting ``at`` (as ``value``, unless None): a cell's own settings before ``defaults``; a
    matrix axis value holds the setting itself (``matrix.program[1].ref``). ``at`` when none does."""
    for where, entry in sorted(entries, key=lambda e: e[0][0] == "defaults"):
        node: Any = entry
        for key in at:
            if not isinstance(node, dict) or key not in node:
                break
            node = node[key]
        else:
            if value is None or node == value:
                return (*where, *at[1:]) if where[0] == "matrix" and where[1] != variant_axis else (*where, *at)
    return at
