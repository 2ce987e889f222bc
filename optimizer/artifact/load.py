"""Load a compiled-program artifact into a runnable program. Nothing is unpickled or evaluated: the only
code imported is the program reference, and only after the file passed the schema and its hash.

>>> program = load_artifact("sentiment.json")
>>> program(sentence="a gorgeous, witty film").sentiment
'positive'
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path
from typing import Any

import dspy
from pydantic import ValidationError

from optimizer import refs
from optimizer.artifact.errors import ArtifactFormatError, ArtifactIntegrityError, ArtifactProgramError
from optimizer.artifact.schema import check_version, json_path, parse, validate, verify_hash
from optimizer.artifact.signature import apply_descriptions, check_program, step_config
from optimizer.models.pool import ModelPool
from optimizer.models.spec import ModelSpec
from optimizer.space.build import build_program, make_adapter

logger = logging.getLogger(__name__)


def read_artifact(path: str | Path) -> dict[str, Any]:
    """The artifact's document, checked for JSON syntax, version, schema and content hash. Imports nothing."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ArtifactFormatError(path, "$", f"cannot read the file: {exc.strerror}") from None
    doc = parse(raw, path)
    check_version(doc, path)
    validate(doc, path)
    verify_hash(doc, path)
    return doc


def _source_file(ref: str) -> Path | None:
    """The file a reference's code lives in, found without running it (``find_spec`` may import parents)."""
    target = ref.partition(":")[0]
    if target.endswith(".py"):
        return Path(target).resolve()
    try:
        spec = importlib.util.find_spec(target)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec and spec.origin else None


def _check_source(doc: dict[str, Any], path: Path, strict: bool) -> None:
    ref, saved = doc["program"]["ref"], doc["program"]["source_sha256"]
    source = _source_file(ref)
    if source is None or not source.is_file():
        return  # the import below reports the bad reference
    actual = hashlib.sha256(source.read_bytes()).hexdigest()
    if actual != saved:
        message = f"{source} changed since the artifact was saved (sha256 {actual}, saved {saved})"
        if strict:
            raise ArtifactIntegrityError(path, "program.source_sha256", message)
        logger.warning("%s: program.source_sha256: %s; its signatures still match", path, message)


def _program(doc: dict[str, Any], path: Path) -> dspy.Module:
    ref = doc["program"]["ref"]
    try:
        program_class = refs.resolve(ref)
    except ImportError as exc:
        raise ArtifactProgramError(path, "program.ref", str(exc)) from None
    if not (isinstance(program_class, type) and issubclass(program_class, dspy.Module)):
        raise ArtifactProgramError(path, "program.ref", f"{ref} is not a dspy.Module class")
    try:
        return program_class()
    except Exception as exc:  # noqa: BLE001 - user code; report where it came from
        raise ArtifactProgramError(path, "program.ref", f"{ref}() failed: {type(exc).__name__}: {exc}") from exc


def _pool(doc: dict[str, Any], path: Path) -> ModelPool:
    """One pool entry per model name; two steps naming one model must configure it identically."""
    specs: dict[str, tuple[str, ModelSpec]] = {}
    for step, body in doc["steps"].items():
        at = ("steps", step, "model")
        try:
            spec = ModelSpec(**body["model"])
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ArtifactFormatError(path, json_path((*at, *first["loc"])), first["msg"]) from None
        first_step, prior = specs.setdefault(spec.name, (step, spec))
        if prior != spec:
            raise ArtifactFormatError(path, json_path(at), f"model {spec.name!r} is configured differently in "
                                      f"{json_path(('steps', first_step, 'model'))}: one name, one configuration")
    return ModelPool(spec for _, spec in specs.values())


def load_artifact(path: str | Path, *, strict_source: bool = False) -> dspy.Module:
    """A runnable program from a compiled-program artifact.

    Checks, in order: JSON, format version, schema, content hash, the program source (a changed source is a
    warning, or an error with ``strict_source``), the import of the program reference, then that the program's
    step names, field names and field types still match. Every check runs before anything is built, and the
    result is a new program: a failed load leaves nothing behind. Raises :class:`ArtifactError` subclasses."""
    path = Path(path)
    doc = read_artifact(path)
    _check_source(doc, path, strict_source)
    program = _program(doc, path)
    steps = doc["steps"]
    check_program(program, steps, path)
    for name, step in steps.items():
        try:
            make_adapter(step["format"])
        except (ImportError, ValueError) as exc:
            raise ArtifactFormatError(path, json_path(("steps", name, "format")), str(exc)) from None
    pool = _pool(doc, path)
    apply_descriptions(program, steps)
    return build_program(program, {name: step_config(step) for name, step in steps.items()}, pool.lm)
