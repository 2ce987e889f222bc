"""The sweep file: one pydantic model is the source of truth (its JSON Schema ships as
``schemas/sweep.v1.schema.json``); a matrix of compile settings expands into cells.

```yaml
name: quickstart
defaults: {budget: 150, val_limit: 30, test_limit: 60}
matrix:
  program: [{ref: programs/sentiment.py:Sentiment}, {ref: programs/news.py:NewsTopic}]
  optimizer: [progopt, LabeledFewShot]
  seed: [0, 1]
exclude: [{program: {ref: programs/news.py:NewsTopic}, optimizer: LabeledFewShot}]
include: [{optimizer: MIPROv2, optimizer_args: {auto: light}}]
```

Expansion, like a CI matrix: the product of the ``matrix`` axes over ``defaults`` (an axis named ``variant``
holds mappings of settings that go together, e.g. ``{optimizer: progopt, budget_from: dspy-max}``);
``exclude`` entries drop every cell whose settings contain all of the entry's; ``include`` entries are added
as cells of their own (over ``defaults``). A DSPy optimizer runs on one model at a time: a DSPy cell with
several pool models becomes one cell per model. A bad file is refused before anything runs, naming the key
path and line.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from optimizer.errors import ProgoptError
from optimizer.files import read_regular
from optimizer.models.spec import known_model_name
from optimizer.search.settings import LabelWords, Sampler
from optimizer.space.variant import Format, strategy_settings
from optimizer.sweep.preflight import CellCheckError, check_cells, written_at
from optimizer.sweep.yaml_nodes import first_problem, key_path, line_of

# "ZeroShot" is the unoptimized program on one model (DSPy's adapter, constrained output): the floor.
Optimizer = Literal["progopt", "ZeroShot", "LabeledFewShot", "BootstrapFewShot", "BootstrapFewShotWithRandomSearch",
                    "MIPROv2", "GEPA"]
DEFAULT_MODELS = ("local/smollm2-135m", "local/gemma3-270m")
# The fixed space and selection cells ran with before the budget-scaled defaults (see CellSettings._canonical).
LEGACY_DEFAULTS: dict[str, Any] = {"strategies": ["direct"], "demo_draws": 1, "final_top": 0, "final_share": 0.25,
                                   "label_words": []}
PLACEHOLDER = {"ref": "program.py:Program"}  # lets one entry's values be validated on their own
# A matrix axis whose values are mappings of settings that go together (optimizer with its budget rule).
VARIANT_AXIS = "variant"


class SweepConfigError(ProgoptError, ValueError):
    """A sweep file that cannot run: the file, the key path and the line of the offending value."""

    def __init__(self, path: str | Path, key_path: str, line: int | None, message: str):
        self.path, self.key_path, self.line = str(path), key_path, line
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {key_path or '$'}: {message}")


class ProgramSettings(BaseModel):
    """A program and its data: the program module's ``TASK`` and ``metric`` unless given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ref: str = Field(description="path/file.py:Class or module:Class")
    metric: str | None = Field(None, description="exact_match:FIELD, entity_f1[:FIELD] or file.py:function")
    inputs: tuple[str, ...] | None = Field(None, description="input field names (default: the TASK's)")
    map: tuple[str, ...] = Field((), description="FIELD=COLUMN renames for data files")
    train: str | None = Field(None, description="train file or TASK split (default: train)")
    val: str | None = Field(None, description="validation file or TASK split (default: val)")
    test: str | None = Field(None, description="test file or TASK split (default: test)")

    @property
    def name(self) -> str:
        return self.ref.rpartition(":")[2]


class CellSettings(BaseModel):
    """Everything one cell runs with. Its canonical JSON is the cell's identity (:meth:`cell_id`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    program: ProgramSettings
    optimizer: Optimizer = "progopt"
    optimizer_args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of a DSPy optimizer")
    models: tuple[str, ...] = DEFAULT_MODELS
    budget: int = Field(300, gt=0, le=1_000_000,
                        description="LM calls of the compile (progopt; GEPA's max_metric_calls)")
    budget_from: Literal["dspy-max"] | None = Field(
        None, description="progopt cells: instead of `budget`, the most LM calls any DSPy optimizer used on "
        "the same program in this sweep (times `budget_fraction`); those cells run first")
    budget_fraction: float = Field(1.0, gt=0, le=10)
    budget_seconds: float | None = Field(None, gt=0)
    formats: tuple[Format, ...] = ("json", "compact")
    strategies: tuple[str, ...] | None = Field(None, description="progopt cells: decoding strategies (None: "
                                               "the compile's budget-scaled default)")
    demo_draws: int | None = Field(None, ge=1, le=64, description="progopt cells: label-balanced demo sets per "
                                   "size (None: by budget)")
    retrieval_sizes: tuple[Annotated[int, Field(ge=1, le=64)], ...] = Field(
        (), description="progopt cells: retrieved-demo candidates knn{k} (k most similar training examples)")
    label_words: tuple[LabelWords, ...] | None = Field(None, description="progopt cells: label-word candidates "
                                                       "of label steps, 'signature' and/or 'auto' (None: by budget)")
    search: Sampler = "tpe"
    minibatch: int = Field(12, gt=0, le=10_000)
    final_top: int | None = Field(None, ge=0, le=20, description="progopt cells: the top validated variants "
                                  "re-scored on held-out training examples before the choice (None: by budget)")
    final_share: float | None = Field(None, gt=0, lt=1, description="progopt cells: the budget share of that "
                                      "re-scoring (None: the default)")
    validation: int | None = Field(None, gt=0, description="progopt cells: validation examples per promoted "
                                   "variant (None: by budget for a cell that leaves its space open, else all)")
    seed: int = Field(0, ge=0)
    train_limit: int | None = Field(None, gt=0)
    val_limit: int | None = Field(60, gt=0)
    test_limit: int | None = Field(200, gt=0)
    dspy_adapter: Literal["chat", "json"] = Field(
        "chat", description="DSPy cells: the adapter over constrained decoding (chat: DSPy's default ChatAdapter)")

    @field_validator("strategies")
    @classmethod
    def _known_strategies(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for strategy in value or ():
            strategy_settings(strategy)  # raises ValueError naming the bad one
        return value

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """The CLI's rule: an embedded model, or a LiteLLM ``provider/model`` string LiteLLM knows."""
        if not value:
            raise ValueError("at least one model")
        for name in value:
            known_model_name(name)
        return value

    def cell_id(self) -> str:
        """12 hex digits of the sha256 of the canonical settings that differ from their defaults: stable across
        runs, machines, file edits that leave this cell's settings alone, and new settings added with defaults."""
        canonical = json.dumps(self._canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def open_space(self) -> bool:
        """A progopt cell that leaves a space or selection setting to the compile's budget-scaled defaults."""
        return self.optimizer == "progopt" and None in (self.strategies, self.demo_draws, self.final_top,
                                                        self.label_words)

    def _canonical(self) -> dict[str, Any]:
        """The settings that differ from their defaults. A setting given at its value from before the
        budget-scaled defaults (issue #37) is left out as it was then, so earlier cells keep their ids and
        meaning; a progopt cell that leaves one open is marked ``space: by-budget``, so it never takes an
        earlier cell's id (that meant the fixed defaults)."""
        settings = self.model_dump(mode="json", exclude_defaults=True)
        for key, legacy in LEGACY_DEFAULTS.items():
            if settings.get(key) == legacy:
                settings.pop(key)
        if self.open_space():
            settings["space"] = "by-budget"
        return settings

    def group(self) -> str:
        """The cells that differ only by seed share a group."""
        settings = self._canonical()
        settings.pop("seed", None)
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]

    def label(self) -> str:
        """A short human name: optimizer (with its model and any ``optimizer_args`` for DSPy cells) and budget;
        a progopt cell's formats when they are not the default ones."""
        suffix = f"+final{self.final_top}" if (self.final_top or 0) > 1 else ""
        suffix += "+auto" if self.open_space() else ""
        if self.formats != type(self).model_fields["formats"].default:
            suffix += f"({','.join(self.formats)})"
        if self.optimizer == "progopt" and self.budget_from:
            return f"progopt@{self.budget_fraction:g}x{self.budget_from}{suffix}"
        if self.optimizer == "progopt":
            return f"progopt@{self.budget}{suffix}"
        args = ",".join(f"{k}={v}" for k, v in sorted(self.optimizer_args.items()))
        return f"{self.optimizer}[{self.models[0].split('/')[-1]}]" + (f"({args})" if args else "")


class SweepFile(BaseModel):
    """A sweep: ``defaults`` for every cell, ``matrix`` axes (each a list of values of one setting),
    ``include``/``exclude`` entries."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    output: str | None = Field(None, description="results folder (default: out/sweeps/<name>)")
    defaults: dict[str, Any] = Field(default_factory=dict)
    matrix: dict[str, list[Any]] = Field(default_factory=dict)
    include: list[dict[str, Any]] = Field(default_factory=list)
    exclude: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("defaults", "matrix", "include", "exclude")
    @classmethod
    def _known_keys(cls, value: Any) -> Any:
        entries = value if isinstance(value, list) else [value]
        for entry in entries:
            unknown = sorted(set(entry) - set(CellSettings.model_fields) - {VARIANT_AXIS})
            if unknown:
                raise ValueError(f"unknown setting {unknown[0]!r} (settings: {', '.join(CellSettings.model_fields)})")
        return value

    def cells(self) -> list[CellSettings]:
        """The expanded cells, in file order, without duplicates."""
        axes = list(self.matrix)
        combos = [_flatten(dict(zip(axes, values, strict=True))) for values in itertools.product(*self.matrix.values())]
        combos = [c for c in combos if not any(_contains(c, e) for e in self.exclude)]
        cells: dict[str, CellSettings] = {}
        for combo in [*combos, *self.include]:
            settings = CellSettings(**{**self.defaults, **combo})
            for cell in _per_model(settings):
                cells.setdefault(cell.cell_id(), cell)
        return list(cells.values())


def _flatten(combo: dict[str, Any]) -> dict[str, Any]:
    """A combination with its ``variant`` value (a mapping of settings) merged in."""
    variant = combo.pop(VARIANT_AXIS, None)
    if variant is not None and not isinstance(variant, dict):
        raise ValueError(f"each `{VARIANT_AXIS}` value is a mapping of settings")
    return {**combo, **(variant or {})}


def _contains(combo: dict[str, Any], entry: dict[str, Any]) -> bool:
    return all(key in combo and _normal(combo[key]) == _normal(value) for key, value in entry.items())


def _normal(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _per_model(settings: CellSettings) -> list[CellSettings]:
    """A DSPy optimizer runs on each pool model separately."""
    if settings.optimizer == "progopt" or len(settings.models) == 1:
        return [settings]
    return [settings.model_copy(update={"models": (m,)}) for m in settings.models]


def load_sweep(path: str | Path) -> tuple[SweepFile, list[CellSettings]]:
    """Parse, validate and expand a sweep file. Every error is a :class:`SweepConfigError` with the key
    path and line, raised before anything runs: each cell's settings are validated here, and what each cell
    needs is resolved (its program, metric and data, its DSPy optimizer's arguments: :mod:`.preflight`)."""
    path = Path(path)
    try:
        text = read_regular(path).decode("utf-8-sig")
        node = yaml.compose(text)
        problem = first_problem(node)  # a duplicate key, an integer too long: before safe_load takes them
        data = yaml.safe_load(text) if problem is None else None
    except OSError as exc:
        raise SweepConfigError(path, "", None, f"cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SweepConfigError(path, "", None, f"not UTF-8 text: {exc.reason}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise SweepConfigError(path, "", mark.line + 1 if mark else None, f"not valid YAML: {exc}") from None
    except RecursionError:
        raise SweepConfigError(path, "", None, "not valid YAML: nested too deeply") from None
    except ValueError as exc:  # a value PyYAML's constructors refuse without a mark
        raise SweepConfigError(path, "", None, f"not valid YAML: {exc}") from None
    if problem is not None:
        raise SweepConfigError(path, key_path(problem[0]), problem[1], problem[2])
    if not isinstance(data, dict):
        raise SweepConfigError(path, "", 1, f"expected a mapping of settings, got {type(data).__name__}")
    try:
        sweep = SweepFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        raise SweepConfigError(path, key_path(loc), line_of(node, loc), first["msg"]) from None
    entries = [(("defaults",), sweep.defaults)] + [(("include", i), e) for i, e in enumerate(sweep.include)]
    entries += [(("exclude", i), e) for i, e in enumerate(sweep.exclude)]
    entries += [(("matrix", axis, i), v if axis == VARIANT_AXIS and isinstance(v, dict) else {axis: v})
                for axis, values in sweep.matrix.items() for i, v in enumerate(values)]
    for at, entry in entries:  # each value on its own first, so an error points at the value that is wrong
        try:
            CellSettings(**{"program": PLACEHOLDER, **entry})
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = (*at, *first["loc"][1:]) if at[0] == "matrix" and at[1] != VARIANT_AXIS else (*at, *first["loc"])
            raise SweepConfigError(path, key_path(loc), line_of(node, loc), first["msg"]) from None
    try:
        cells = sweep.cells()
    except ValidationError as exc:  # a combination: e.g. no program anywhere
        first = exc.errors()[0]
        raise SweepConfigError(path, key_path(tuple(first["loc"])), line_of(node, ("matrix",)),
                               f"{first['msg']} (in the combined settings of a cell)") from None
    if not cells:
        raise SweepConfigError(path, "matrix", line_of(node, ("matrix",)), "the sweep has no cells")
    try:
        check_cells(cells)  # programs, metrics, data, DSPy arguments: before any cell starts
    except CellCheckError as exc:
        loc = written_at([e for e in entries if e[0][0] != "exclude"], exc.at, exc.value, VARIANT_AXIS)
        raise SweepConfigError(path, key_path(loc), line_of(node, loc), exc.message) from None
    return sweep, cells


CELLS_FILE = "cells.json"


# Settings added after cells were stored, with the value every earlier cell ran with: a stored dump (outcome.json,
# cells.json, settings.json: every field the settings had then) that lacks one ran without it. A sweep file that
# leaves one out means the budget-scaled default instead (CellSettings.open_space).
ADDED_SINCE_STORED: dict[str, Any] = {"final_top": 0, "final_share": 0.25, "label_words": []}


def stored_settings(data: Any) -> Any:
    """A stored cell's settings dump, completed with :data:`ADDED_SINCE_STORED` for what it predates."""
    return {**ADDED_SINCE_STORED, **data} if isinstance(data, dict) else data


def load_cells_settings(output: Path) -> list[CellSettings]:
    """Every cell of the sweep whose output folder is ``output`` (the driver writes ``cells.json`` first)."""
    data = json.loads((output / CELLS_FILE).read_text(encoding="utf-8"))
    return [CellSettings.model_validate(stored_settings(item)) for item in data]


SELECT_KEYS = ("program", "optimizer", "seed", "models", "space")


def select(cells: list[CellSettings], only: Sequence[str]) -> list[CellSettings]:
    """The cells matching every ``KEY=V1,V2`` filter of ``only`` (keys: program (its class name), optimizer, seed,
    models (a cell matches if it uses one of them), space ("by-budget": a progopt cell that leaves its space to
    the budget-scaled defaults, else "given")); how a sweep is run in pieces. Raises ValueError naming a
    filter that is malformed or matches no cell."""
    for spec in only:
        key, sep, values = spec.partition("=")
        wanted = {v.strip() for v in values.split(",") if v.strip()}
        if not sep or key not in SELECT_KEYS or not wanted:
            raise ValueError(f"--only {spec!r}: expected KEY=VALUE[,VALUE...] with KEY one of {', '.join(SELECT_KEYS)}")

        def values_of(cell: CellSettings, key: str = key) -> set[str]:
            if key == "program":
                return {cell.program.name}
            if key == "models":
                return set(cell.models)
            if key == "space":
                return {"by-budget" if cell.open_space() else "given"}
            return {str(getattr(cell, key))}

        kept = [c for c in cells if values_of(c) & wanted]
        if not kept:
            raise ValueError(f"--only {spec!r} matches no cell of the sweep")
        cells = kept
    return cells


def run_order(cells: list[CellSettings]) -> list[CellSettings]:
    """Cells in the order they are queued: those whose budget depends on other cells last."""
    return sorted(cells, key=lambda c: c.budget_from is not None)


def json_schema() -> dict[str, Any]:
    """The sweep file's JSON Schema (with the cell settings' schema under ``$defs``)."""
    schema = SweepFile.model_json_schema()
    cell = CellSettings.model_json_schema()
    schema.setdefault("$defs", {}).update(cell.pop("$defs", {}))
    schema["$defs"]["CellSettings"] = cell
    schema["description"] = ("A progopt sweep (format 1): `defaults`, `include` and `exclude` entries and each "
                             "`matrix` axis value hold settings of $defs/CellSettings.")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "urn:progopt:schema:sweep:v1"
    return schema
