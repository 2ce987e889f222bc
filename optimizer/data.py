"""Load examples from JSONL or CSV into ``dspy.Example``s, with a field mapping and row-level errors.

>>> rows = load_examples("programs/data/sst2/test.jsonl", inputs=["sentence"], mapping={"sentiment": "label"})
>>> rows[0].sentence, rows[0].sentiment
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import dspy

from optimizer.files import NotARegularFile, check_regular, lone_surrogate, read_regular


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


class _DuplicateKey(Exception):
    """A JSON object naming one key twice (its ``args[0]``), raised out of the decoder to :func:`_json_row`."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: a dict, refusing a key given twice (``json`` would keep the last silently)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _Refused(str):
    """Why a decoded value cannot be data (NaN, Infinity, 1e400, too many digits); :func:`_bad_value` reports
    it with its field."""


def _constant(name: str) -> _Refused:
    return _Refused(f"{name} is not a JSON number")


def _float(text: str) -> float | _Refused:
    value = float(text)  # 1e400 reads as infinity
    if math.isfinite(value):
        return value
    return _Refused(f"the number {text if len(text) <= 40 else text[:40] + '...'} is out of range (not finite)")


def _int(text: str) -> int | _Refused:
    digits, limit = len(text.lstrip("-")), sys.get_int_max_str_digits()
    return _Refused(f"an integer of {digits} digits is out of range") if limit and digits > limit else int(text)


def _bad_value(value: Any) -> str | None:
    """Why a parsed JSON value cannot be data: a refused number (NaN, Infinity, 1e400, too many digits) or a
    lone surrogate in a string or key anywhere inside it; ``None`` if it is fine. Iterative, like :func:`_depth`."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Refused):
            return str(item)
        if isinstance(item, str) and lone_surrogate(item):
            return "a lone surrogate escape (such as \\ud800) is not valid Unicode"
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _json_row(path: Path, lineno: int, line: str) -> dict[str, Any]:
    """One JSONL line as an object of at most ``MAX_DEPTH`` levels with unique keys, finite numbers and valid
    Unicode, or a :class:`DataError` naming the line (and the field when there is one)."""
    try:
        obj = json.loads(line, object_pairs_hook=_unique, parse_constant=_constant, parse_float=_float,
                         parse_int=_int)
    except json.JSONDecodeError as exc:
        raise DataError(path, lineno, f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise DataError(path, lineno, f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except _DuplicateKey as exc:
        raise DataError(path, lineno, "the key appears twice in one JSON object", field=exc.args[0]) from None
    except ValueError as exc:  # nothing the hooks above raise; kept so no decoder error escapes as itself
        raise DataError(path, lineno, f"invalid JSON value ({exc})") from None
    if isinstance(obj, _Refused):
        raise DataError(path, lineno, str(obj))
    if not isinstance(obj, dict):
        raise DataError(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
    if _depth(obj) > MAX_DEPTH:
        raise DataError(path, lineno, f"JSON nested deeper than {MAX_DEPTH} levels")
    for key, value in obj.items():
        problem = _bad_value(key) or _bad_value(value)
        if problem:
            raise DataError(path, lineno, problem, field=key)
    return obj


def _file_error(path: Path, exc: OSError) -> DataError:
    if isinstance(exc, FileNotFoundError):
        return DataError(path, None, "file not found")
    if isinstance(exc, NotARegularFile):  # a directory, FIFO, device or socket: refused before it is opened
        return DataError(path, None, exc.strerror)
    return DataError(path, None, f"cannot read ({exc.strerror or exc})")


def check_file(path: str | Path) -> None:
    """Raise the :class:`DataError` reading ``path`` would raise if it is missing or not a regular file (a
    FIFO, whose read would block, a device, a directory), without opening it: for a command to refuse early."""
    try:
        check_regular(path)
    except OSError as exc:
        raise _file_error(Path(path), exc) from None


def _text(path: Path) -> str:
    """The regular file's text decoded as UTF-8 (a leading byte-order mark dropped), or a :class:`DataError`."""
    try:
        raw = read_regular(path)
    except OSError as exc:
        raise _file_error(path, exc) from None
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

    Raises :class:`DataError` for every file problem: missing, not a regular file (a directory, FIFO, device),
    unreadable, not UTF-8, invalid or too deeply nested JSON, a key twice in one object, a number that is not
    finite (NaN, Infinity, 1e400), a lone surrogate escape, a row that is not an object, malformed CSV
    (unbalanced quotes, a field over ``MAX_FIELD_CHARS``, a row with too many or too few values), an unknown
    suffix."""
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(path, None, f"unsupported file type {path.suffix!r} (use .jsonl, .csv or .tsv)")
    text = _text(path)
    if kind != "jsonl":
        return list(_csv_rows(path, text, "\t" if kind == "tsv" else ","))
    # physical lines: only "\n" ends one (JSON strings may hold U+2028 and other characters splitlines splits on)
    return [(i, _json_row(path, i, line)) for i, line in enumerate(text.split("\n"), start=1) if line.strip()]


def _empty(value: Any, present: bool) -> str | None:
    """Why a required field's value is no value: missing, null, ``""``, whitespace only, ``[]`` or ``{}``."""
    if not present or value is None or value == "":
        return "missing or empty"
    if isinstance(value, str) and not value.strip():
        return "empty (whitespace only)"
    if isinstance(value, list | dict) and not value:
        return f"empty ({json.dumps(value)})"
    return None


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
    mapped or input field must be present and non-empty in every row (not null, ``""``, whitespace only, ``[]``
    or ``{}``), no field may be a name
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
            problem = _empty(row.get(column), column in row)
            if problem:
                raise DataError(path, lineno, problem, field=column)
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
