"""The artifact contract: the JSON Schema, strict parsing, version check, schema validation and the
content hash. Nothing here imports user code.

>>> doc = parse(Path("model.json").read_bytes(), "model.json")
>>> check_version(doc, "model.json"); validate(doc, "model.json"); verify_hash(doc, "model.json")
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from optimizer.artifact.errors import ArtifactFormatError, ArtifactIntegrityError, ArtifactVersionError
from optimizer.files import NotARegularFile, lone_surrogate, read_regular

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
MAX_ECHO = 40  # characters of a bad value quoted in an error message
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VERSION = re.compile(r"^([0-9]+)\.([0-9]+)$")  # ASCII digits only (``\d`` also matches other scripts' digits)


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


def model_sites(doc: dict[str, Any]) -> list[tuple[str, tuple[str | int, ...], dict[str, Any]]]:
    """Every model object of a (schema-valid) document as ``(label, JSON path, model)``: each step's, and each
    ensemble member's (label ``step.members[i]``). Every reader of models (trust checks, ``progopt uses``, the
    pool, the secret check) goes through this, so a model the artifact names anywhere is checked."""
    sites = []
    for name, step in doc["steps"].items():
        sites.append((name, ("steps", name, "model"), step["model"]))
        for i, member in enumerate(step.get("members") or []):
            sites.append((f"{name}.members[{i}]", ("steps", name, "members", i, "model"), member["model"]))
    return sites


def canonical_json(obj: Any) -> bytes:
    """The bytes the content hash covers: sorted keys, no whitespace, UTF-8, no NaN/Infinity."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def content_hash(doc: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of everything except the hash itself."""
    return hashlib.sha256(canonical_json({k: v for k, v in doc.items() if k != HASH_KEY})).hexdigest()


def _echo(value: Any) -> str:
    """A bad value for a message: a string as it is, anything else as its ``repr``, cut to :data:`MAX_ECHO`."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_ECHO else f"{text[:MAX_ECHO]}... ({len(text)} characters)"


def check_text(value: Any, path: Path | str, at: tuple[str | int, ...] = ()) -> None:
    """Refuse a lone surrogate in any string or key of ``value`` (the content hash is over UTF-8 bytes)."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, at)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str) and lone_surrogate(item):
            raise ArtifactFormatError(path, json_path(where), "a lone surrogate escape (such as \\ud800) is not "
                                      "valid Unicode")
        if isinstance(item, dict):
            stack.extend((key, where) for key in item)  # a bad key is reported at its object
            stack.extend((child, (*where, key)) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, (*where, i)) for i, child in enumerate(item))


class _Pairs(list):
    """A JSON object as its key/value pairs, so duplicate keys are seen instead of silently merged."""


class _Refused(str):
    """Why a decoded value cannot be in an artifact; :func:`_objects` refuses it at its JSON path."""


def _constant(name: str) -> _Refused:
    return _Refused(f"{name} is not valid JSON")


def _finite(text: str) -> float | _Refused:
    value = float(text)  # never raises on a JSON number; thousands of digits become inf or 0.0
    return value if math.isfinite(value) else _Refused(f"the number {_echo(text)} is out of range")


def _bounded_int(text: str) -> int | _Refused:
    digits = len(text.lstrip("-"))  # checked before int(), which raises past Python's digit limit
    return int(text) if digits <= MAX_INT_DIGITS else _Refused(f"an integer of {digits} digits is out of range")


def _objects(value: Any, path: Path | str, at: tuple[str | int, ...] = ()) -> Any:
    """Plain dicts from :class:`_Pairs`, refusing duplicate keys, lone surrogates, NaN/Infinity, out-of-range
    numbers and anything past the structural bounds, each at its JSON path."""
    if len(at) > MAX_DEPTH:
        raise ArtifactFormatError(path, json_path(at[:MAX_DEPTH]), f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, _Refused):
        raise ArtifactFormatError(path, json_path(at), str(value))
    if isinstance(value, str) and len(value) > MAX_STRING:
        raise ArtifactFormatError(path, json_path(at), f"a string of {len(value)} characters (at most {MAX_STRING})")
    if isinstance(value, str) and lone_surrogate(value):
        raise ArtifactFormatError(path, json_path(at), "a lone surrogate escape (such as \\ud800) is not valid "
                                  "Unicode")
    if isinstance(value, list) and len(value) > MAX_ITEMS:
        raise ArtifactFormatError(path, json_path(at), f"{len(value)} items (at most {MAX_ITEMS})")
    if isinstance(value, _Pairs):
        if len(value) > MAX_ITEMS:
            raise ArtifactFormatError(path, json_path(at), f"{len(value)} keys (at most {MAX_ITEMS})")
        out: dict[str, Any] = {}
        for key, item in value:
            if len(key) > MAX_STRING:
                raise ArtifactFormatError(path, json_path(at), f"a key of {len(key)} characters")
            if lone_surrogate(key):
                raise ArtifactFormatError(path, json_path(at), "a key with a lone surrogate escape (such as "
                                          "\\ud800) is not valid Unicode")
            if key in out:
                raise ArtifactFormatError(path, json_path((*at, key)), "duplicate key")
            out[key] = _objects(item, path, (*at, key))
        return out
    if isinstance(value, list):
        return [_objects(item, path, (*at, i)) for i, item in enumerate(value)]
    return value


def read_bounded(path: Path) -> bytes:
    """The file's bytes, refusing a path that is not a regular file (a directory, FIFO, device: before it is
    opened, so nothing blocks) or a file over :data:`MAX_BYTES`."""
    try:
        raw = read_regular(path, MAX_BYTES + 1)
    except NotARegularFile as exc:
        raise ArtifactFormatError(path, "$", f"cannot read the file: {exc.strerror}") from None
    except OSError as exc:
        raise ArtifactFormatError(path, "$", f"cannot read the file: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise ArtifactFormatError(path, "$", f"larger than {MAX_BYTES // (1024 * 1024)} MiB")
    return raw


def parse(raw: bytes, path: Path | str) -> dict[str, Any]:
    """Strict JSON: UTF-8 (a leading byte-order mark is ignored), an object at the top, no duplicate keys, no
    NaN/Infinity or out-of-range numbers, no lone surrogates, within the bounds."""
    try:
        tree = json.loads(raw.decode("utf-8-sig"), object_pairs_hook=_Pairs, parse_constant=_constant,
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
    match = _VERSION.fullmatch(version) if isinstance(version, str) else None
    if match is None:
        raise ArtifactFormatError(path, "format_version", f"expected 'MAJOR.MINOR', got {_echo(repr(version))}")
    major = match.group(1).lstrip("0") or "0"  # compared as text: int() of thousands of digits would raise
    if major != str(SUPPORTED_MAJOR):
        raise ArtifactVersionError(path, "format_version", f"format {_echo(version)} is not supported: this "
                                   f"progopt reads format {SUPPORTED_MAJOR}.x; upgrade progopt or re-export the "
                                   "artifact")


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
        if len(message) > 300:  # jsonschema quotes the whole offending value
            message = f"{message[:300]}... (cut)"
        more = f" (and {len(errors) - 1} more schema errors)" if len(errors) > 1 else ""
        raise ArtifactFormatError(path, _error_path(best), f"{message}{more}")


def verify_hash(doc: dict[str, Any], path: Path | str) -> None:
    """Refuse a document whose content does not match its ``content_sha256``."""
    check_text(doc, path)  # parse refused these already; a document built in code may still hold one
    actual = content_hash(doc)
    if doc.get(HASH_KEY) != actual:
        raise ArtifactIntegrityError(path, HASH_KEY, f"content hash mismatch: the file says {doc.get(HASH_KEY)}, "
                                     f"its content hashes to {actual}; it was modified after it was saved")
