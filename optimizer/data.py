"""Load examples from JSONL or CSV into ``dspy.Example``s, with a field mapping and row-level errors.

>>> rows = load_examples("programs/data/sst2/test.jsonl", inputs=["sentence"], mapping={"sentiment": "label"})
>>> rows[0].sentence, rows[0].sentiment
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import dspy


class DataError(ValueError):
    """A data file or row that cannot be used; names the file, the physical line and the field."""

    def __init__(self, path: Path | str, line: int | None, message: str, field: str | None = None):
        self.path, self.line, self.field, self.message = str(path), line, field, message
        where = f"{path}" + (f", line {line}" if line is not None else "") + (f", field {field!r}" if field else "")
        super().__init__(f"{where}: {message}")


MAX_DEPTH = 64  # nesting of JSON values in a row
MAX_FIELD_CHARS = csv.field_size_limit()  # one CSV field (csv's own limit, 128 KiB; not raised globally)
# Field names ``dspy.Example`` would not keep as plain fields: ``base`` is its constructor's record
# argument (a dict value's keys would become fields), ``dspy_*`` keys are hidden, the rest are methods.
RESERVED_FIELDS = frozenset({"base", *(m for m in dir(dspy.Example) if not m.startswith("__"))})
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv"}


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value, without recursion (a scalar is 0)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _json_row(path: Path, lineno: int, line: str) -> dict[str, Any]:
    """One JSONL line as an object of at most ``MAX_DEPTH`` levels, or a :class:`DataError`."""
    try:
        obj = json.loads(line, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise DataError(path, lineno, f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise DataError(path, lineno, f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # integers beyond Python's digit limit, NaN/Infinity
        raise DataError(path, lineno, f"invalid JSON value ({str(exc).split(';')[0]})") from None
    if not isinstance(obj, dict):
        raise DataError(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
    if _depth(obj) > MAX_DEPTH:
        raise DataError(path, lineno, f"JSON nested deeper than {MAX_DEPTH} levels")
    return obj


def _text(path: Path) -> str:
    """The file decoded as UTF-8 (a leading byte-order mark dropped), or a :class:`DataError`."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    except IsADirectoryError:
        raise DataError(path, None, "is a directory, not a file") from None
    except OSError as exc:
        raise DataError(path, None, f"cannot read ({exc.strerror or exc})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(path, line, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {column})") from None


def _csv_rows(path: Path, text: str, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Strict CSV: a header of distinct non-empty names, then rows of exactly as many values."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    start = 1
    try:
        for row in reader:
            lineno, start = start, reader.line_num + 1
            if not row:
                continue
            if header is None:
                header = row
                for i, name in enumerate(header):
                    if not name.strip():
                        raise DataError(path, lineno, f"header column {i + 1} has no name")
                    if name in header[:i]:
                        raise DataError(path, lineno, "appears twice in the header", field=name)
                continue
            if len(row) != len(header):
                raise DataError(path, lineno, f"{len(row)} values but the header has {len(header)} columns")
            yield lineno, dict(zip(header, row, strict=True))
    except csv.Error as exc:
        raise DataError(path, start if "end of data" in str(exc) else reader.line_num,
                        f"malformed CSV ({exc})") from None


def read_rows(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(physical line, row) for every record of a JSONL or CSV/TSV file; blank lines are skipped.

    Raises :class:`DataError` for every file problem: missing, a directory, unreadable, not UTF-8,
    invalid or too deeply nested JSON, a row that is not an object, malformed CSV (unbalanced quotes,
    a field over ``MAX_FIELD_CHARS``, a row with too many or too few values), an unknown suffix."""
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(path, None, f"unsupported file type {path.suffix!r} (use .jsonl, .csv or .tsv)")
    text = _text(path)
    if kind != "jsonl":
        return list(_csv_rows(path, text, "\t" if kind == "tsv" else ","))
    # physical lines: only "\n" ends one (JSON strings may hold U+2028 and other characters splitlines splits on)
    return [(i, _json_row(path, i, line)) for i, line in enumerate(text.split("\n"), start=1) if line.strip()]


def load_examples(
    path: str | Path,
    *,
    inputs: Sequence[str],
    mapping: Mapping[str, str] | None = None,
    limit: int | None = None,
) -> list[dspy.Example]:
    """Read a JSONL/CSV file into examples whose input keys are ``inputs``.

    Every column becomes a field; ``mapping`` renames file columns to program field names:
    ``{"sentiment": "label"}`` reads the file's ``label`` column as the field ``sentiment``. Every
    mapped or input field must be present and non-empty in every row, no field may be a name
    ``dspy.Example`` reserves (:data:`RESERVED_FIELDS`) and no renamed column may collide with another
    column; otherwise a :class:`DataError` names the file, line and field. ``limit`` (>= 0) keeps the
    first rows; nothing else is dropped.
    """
    path = Path(path)
    if limit is not None and limit < 0:
        raise DataError(path, None, f"limit must be 0 or more, got {limit}")
    mapping = dict(mapping or {})
    wanted = {name: mapping.get(name, name) for name in [*inputs, *mapping]}
    for field in wanted:
        if field in RESERVED_FIELDS:
            raise DataError(path, None, "is a name dspy.Example reserves; map it to another name", field=field)
    examples = []
    for lineno, row in read_rows(path)[:limit]:
        values = {column: value for column, value in row.items() if column not in mapping.values()}
        for field, column in wanted.items():
            if column not in row or row[column] is None or row[column] == "":
                raise DataError(path, lineno, "missing or empty", field=column)
            if field != column and field in values:
                raise DataError(path, lineno, f"column collides with the field mapped from {column!r}", field=field)
            values[field] = row[column]
        for field in values:
            if field in RESERVED_FIELDS or field.startswith("dspy_"):
                raise DataError(path, lineno, "is a name dspy.Example reserves; rename or --map it", field=field)
        examples.append(dspy.Example(**values).with_inputs(*inputs))
    if not examples:
        raise DataError(path, None, "no rows" if limit != 0 else "no rows (limit 0)")
    return examples


def dataset_hash(examples: Sequence[dspy.Example]) -> str:
    """A stable sha256 over the examples' fields (order-sensitive), for provenance records."""
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(json.dumps(dict(ex.items()), sort_keys=True, default=str).encode())
    return digest.hexdigest()


class Task:
    """Where a reference program's data lives and how file columns map to its fields.

    >>> TASK = Task("sst2", inputs=["sentence"], mapping={"sentiment": "label"})
    >>> TASK.load("test", limit=200)  # data/sst2/test.jsonl beside the module that made TASK

    ``root`` is the folder holding ``<name>/<split>.jsonl``; default: ``data`` beside the file of the module
    that constructs the Task (a program's data lives beside the program, installed or not)."""

    def __init__(self, name: str, *, inputs: Sequence[str], mapping: Mapping[str, str] | None = None,
                 root: str | Path | None = None):
        self.name, self.inputs, self.mapping = name, list(inputs), dict(mapping or {})
        if root is None:
            caller = sys._getframe(1).f_globals.get("__file__")
            if caller is None:
                raise ValueError(f"task {name!r}: pass root= (made outside a module file)")
            root = Path(caller).resolve().parent / "data"
        self.root = Path(root)

    def path(self, split: str) -> Path:
        return self.root / self.name / f"{split}.jsonl"

    def load(self, split: str, limit: int | None = None) -> list[dspy.Example]:
        return load_examples(self.path(split), inputs=self.inputs, mapping=self.mapping, limit=limit)
