"""The artifact contract: the JSON Schema, strict parsing, version check, schema validation and the
content hash. Nothing here imports user code.

>>> doc = parse(Path("model.json").read_bytes(), "model.json")
>>> check_version(doc, "model.json"); validate(doc, "model.json"); verify_hash(doc, "model.json")
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from optimizer.artifact.errors import ArtifactFormatError, ArtifactIntegrityError, ArtifactVersionError

FORMAT_VERSION = "1.0"
SUPPORTED_MAJOR = 1
SCHEMA_FILE = "compiled-program.v1.schema.json"
HASH_KEY = "content_sha256"
# Structural bounds checked while parsing, before the schema (which bounds each field's value).
MAX_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 48
MAX_STRING = 200_000
MAX_ITEMS = 10_000
MAX_INT_DIGITS = 30
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VERSION = re.compile(r"^(\d+)\.(\d+)$")


@cache
def schema() -> dict[str, Any]:
    """The packaged compiled-program JSON Schema (an identical copy of ``schemas/`` at the repo root)."""
    return json.loads(resources.files("optimizer.artifact").joinpath(SCHEMA_FILE).read_text("utf-8"))


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema())


def json_path(parts: list[str | int] | tuple[str | int, ...]) -> str:
    """``["steps", "classify", "demos", 0]`` -> ``steps.classify.demos[0]``; keys that are not
    identifiers are quoted (``steps["a.b"]``); the empty path is ``$``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out or "$"


def canonical_json(obj: Any) -> bytes:
    """The bytes the content hash covers: sorted keys, no whitespace, UTF-8, no NaN/Infinity."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def content_hash(doc: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of everything except the hash itself."""
    return hashlib.sha256(canonical_json({k: v for k, v in doc.items() if k != HASH_KEY})).hexdigest()


class _Pairs(list):
    """A JSON object as its key/value pairs, so duplicate keys are seen instead of silently merged."""


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:20]}... is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits is out of range")
    return int(text)


def _objects(value: Any, path: Path | str, at: tuple[str | int, ...] = ()) -> Any:
    """Plain dicts from :class:`_Pairs`, refusing duplicate keys and anything past the structural bounds."""
    if len(at) > MAX_DEPTH:
        raise ArtifactFormatError(path, json_path(at[:MAX_DEPTH]), f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str) and len(value) > MAX_STRING:
        raise ArtifactFormatError(path, json_path(at), f"a string of {len(value)} characters (at most {MAX_STRING})")
    if isinstance(value, list) and len(value) > MAX_ITEMS:
        raise ArtifactFormatError(path, json_path(at), f"{len(value)} items (at most {MAX_ITEMS})")
    if isinstance(value, _Pairs):
        out: dict[str, Any] = {}
        for key, item in value:
            if len(key) > MAX_STRING:
                raise ArtifactFormatError(path, json_path(at), f"a key of {len(key)} characters")
            if key in out:
                raise ArtifactFormatError(path, json_path((*at, key)), "duplicate key")
            out[key] = _objects(item, path, (*at, key))
        return out
    if isinstance(value, list):
        return [_objects(item, path, (*at, i)) for i, item in enumerate(value)]
    return value


def read_bounded(path: Path) -> bytes:
    """The file's bytes, refusing a file that is not a regular file or is over :data:`MAX_BYTES`."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ArtifactFormatError(path, "$", f"cannot read the file: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise ArtifactFormatError(path, "$", f"larger than {MAX_BYTES // (1024 * 1024)} MiB")
    return raw


def parse(raw: bytes, path: Path | str) -> dict[str, Any]:
    """Strict JSON: UTF-8, an object at the top, no duplicate keys, no NaN/Infinity, within the bounds."""
    try:
        tree = json.loads(raw.decode("utf-8"), object_pairs_hook=_Pairs, parse_constant=_reject_constant,
                          parse_float=_finite, parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        raise ArtifactFormatError(path, "$", f"not valid JSON ({exc.msg} at line {exc.lineno}, column "
                                  f"{exc.colno}); the file may be truncated") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ArtifactFormatError(path, "$", f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ArtifactFormatError(path, "$", f"nested deeper than {MAX_DEPTH} levels") from None
    doc = _objects(tree, path)
    if not isinstance(doc, dict):
        raise ArtifactFormatError(path, "$", f"expected a JSON object, got {type(doc).__name__}")
    return doc


def check_version(doc: dict[str, Any], path: Path | str) -> None:
    """Refuse a missing or malformed ``format_version`` and any major version but ours."""
    version = doc.get("format_version")
    match = _VERSION.match(version) if isinstance(version, str) else None
    if match is None:
        raise ArtifactFormatError(path, "format_version", f"expected 'MAJOR.MINOR', got {version!r}")
    if int(match.group(1)) != SUPPORTED_MAJOR:
        raise ArtifactVersionError(path, "format_version", f"format {version} is not supported: this progopt "
                                   f"reads format {SUPPORTED_MAJOR}.x; upgrade progopt or re-export the artifact")


def _error_path(error: jsonschema.ValidationError) -> str:
    """The JSON path of a schema error, pointing at the unknown or missing key itself when there is one."""
    parts = list(error.absolute_path)
    instance = error.instance
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = set(error.schema.get("properties", {}))
        parts += sorted(k for k in instance if k not in known)[:1]
    elif error.validator == "required" and isinstance(instance, dict):
        parts += [k for k in error.validator_value if k not in instance][:1]
    return json_path(parts)


def validate(doc: dict[str, Any], path: Path | str) -> None:
    """Validate against the compiled-program schema; the error names the best-matching bad field."""
    errors = list(_validator().iter_errors(doc))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        # a pattern error would echo the value, which may be a credential (an api_base with a password)
        message = f"does not match {best.validator_value!r}" if best.validator == "pattern" else best.message
        more = f" (and {len(errors) - 1} more schema errors)" if len(errors) > 1 else ""
        raise ArtifactFormatError(path, _error_path(best), f"{message}{more}")


def verify_hash(doc: dict[str, Any], path: Path | str) -> None:
    """Refuse a document whose content does not match its ``content_sha256``."""
    actual = content_hash(doc)
    if doc.get(HASH_KEY) != actual:
        raise ArtifactIntegrityError(path, HASH_KEY, f"content hash mismatch: the file says {doc.get(HASH_KEY)}, "
                                     f"its content hashes to {actual}; it was modified after it was saved")
