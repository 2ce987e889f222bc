"""Load examples from JSONL or CSV into ``dspy.Example``s, with a field mapping and row-level errors.

>>> rows = load_examples("programs/data/sst2/test.jsonl", inputs=["sentence"], mapping={"sentiment": "label"})
>>> rows[0].sentence, rows[0].sentiment
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import dspy


class DataError(ValueError):
    """A dataset row that cannot be used; names the file, the line and the field."""

    def __init__(self, path: Path | str, line: int | None, message: str, field: str | None = None):
        self.path, self.line, self.field = str(path), line, field
        where = f"{path}" + (f", line {line}" if line is not None else "") + (f", field {field!r}" if field else "")
        super().__init__(f"{where}: {message}")


def _read_rows(path: Path) -> list[tuple[int, dict]]:
    if not path.exists():
        raise DataError(path, None, "file not found")
    suffix = path.suffix.lower()
    rows: list[tuple[int, dict]] = []
    if suffix in {".jsonl", ".ndjson"}:
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(path, lineno, f"invalid JSON ({exc.msg} at column {exc.colno})") from exc
                if not isinstance(obj, dict):
                    raise DataError(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
                rows.append((lineno, obj))
    elif suffix in {".csv", ".tsv"}:
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            for i, obj in enumerate(reader, start=2):  # line 1 is the header
                if None in obj:
                    raise DataError(path, i, "more values than header columns")
                rows.append((i, dict(obj)))
    else:
        raise DataError(path, None, f"unsupported file type {suffix!r} (use .jsonl, .csv or .tsv)")
    return rows


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
    mapped or input field must be present and non-empty in every row, or a :class:`DataError` names
    the file, line and column.
    """
    path = Path(path)
    mapping = dict(mapping or {})
    wanted = {name: mapping.get(name, name) for name in [*inputs, *mapping]}
    examples = []
    for lineno, row in _read_rows(path)[:limit]:
        values = {column: value for column, value in row.items() if column not in mapping.values()}
        for field, column in wanted.items():
            if column not in row or row[column] is None or row[column] == "":
                raise DataError(path, lineno, "missing or empty", field=column)
            values[field] = row[column]
        examples.append(dspy.Example(**values).with_inputs(*inputs))
    if not examples:
        raise DataError(path, None, "no rows")
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
    >>> TASK.load("test", limit=200)
    """

    def __init__(self, name: str, *, inputs: Sequence[str], mapping: Mapping[str, str] | None = None,
                 root: str | Path | None = None):
        self.name, self.inputs, self.mapping = name, list(inputs), dict(mapping or {})
        self.root = Path(root) if root else Path(__file__).resolve().parent.parent / "programs" / "data"

    def path(self, split: str) -> Path:
        return self.root / self.name / f"{split}.jsonl"

    def load(self, split: str, limit: int | None = None) -> list[dspy.Example]:
        return load_examples(self.path(split), inputs=self.inputs, mapping=self.mapping, limit=limit)
