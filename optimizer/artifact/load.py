"""Load a compiled-program artifact into a runnable program. Nothing is unpickled or evaluated; the only
code imported is the program reference, and only where the user's :class:`TrustPolicy` allows it, after its
file's bytes matched the artifact's hash. Endpoints and model files pass the same policy first.

>>> program = load_artifact("sentiment.json")                         # program under the working project
>>> program = load_artifact("sentiment.json", program=Sentiment)      # no import at all
>>> program = load_artifact("a.json", trust=TrustPolicy.from_env(trust=["/srv/programs"]))
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dspy
from pydantic import ValidationError

from optimizer import refs
from optimizer.artifact.errors import (
    ArtifactFormatError,
    ArtifactIntegrityError,
    ArtifactProgramError,
    ArtifactTrustError,
)
from optimizer.artifact.schema import (
    check_version,
    json_path,
    model_sites,
    parse,
    read_bounded,
    validate,
    verify_hash,
)
from optimizer.artifact.signature import apply_descriptions, check_program, step_config
from optimizer.artifact.trust import TrustPolicy, checked_models
from optimizer.models.pool import ModelPool
from optimizer.models.spec import ModelSpec
from optimizer.space.build import build_program, make_adapter

logger = logging.getLogger(__name__)


def read_artifact(path: str | Path) -> dict[str, Any]:
    """The artifact's document, checked for size, JSON syntax, nesting, version, schema (with its bounds) and
    content hash. Imports nothing, resolves nothing, sends nothing."""
    path = Path(path)
    doc = parse(read_bounded(path), path)
    check_version(doc, path)
    validate(doc, path)
    verify_hash(doc, path)
    return doc


def _program_class(doc: dict[str, Any], path: Path, policy: TrustPolicy) -> type:
    ref, saved = doc["program"]["ref"], doc["program"]["source_sha256"]
    if policy.allow_source_drift:
        try:
            actual = refs.sha256_file(refs.locate(ref, policy.roots, policy.packages).path)
        except (refs.ProgramReferenceError, OSError):
            actual = saved  # resolve_trusted below reports it
        if actual != saved:
            logger.warning("%s: program.source_sha256: the program source changed since the artifact was saved "
                           "(sha256 %s, saved %s); loading it anyway because source drift was allowed",
                           path, actual, saved)
    try:
        return refs.resolve_trusted(ref, roots=policy.roots, packages=policy.packages,
                                    sha256=None if policy.allow_source_drift else saved)
    except refs.UntrustedReferenceError as exc:
        raise ArtifactTrustError(path, "program.ref", str(exc)) from None
    except refs.SourceMismatchError as exc:
        raise ArtifactIntegrityError(path, "program.source_sha256", f"{exc}; refusing to run it (allow it with "
                                     "--allow-source-drift, or compile again)") from None
    except ImportError as exc:
        raise ArtifactProgramError(path, "program.ref", str(exc)) from None


def _program(doc: dict[str, Any], path: Path, policy: TrustPolicy, program: type | None) -> dspy.Module:
    ref = doc["program"]["ref"]
    program_class = program if program is not None else _program_class(doc, path, policy)
    if not (isinstance(program_class, type) and issubclass(program_class, dspy.Module)):
        raise ArtifactProgramError(path, "program.ref", f"{ref} is not a dspy.Module class")
    try:
        with refs.guarded(f"{ref}()"):
            return program_class()
    except Exception as exc:  # noqa: BLE001 - user code; report where it came from
        raise ArtifactProgramError(path, "program.ref", f"{ref}() failed: {type(exc).__name__}: {exc}") from exc


def _pool(doc: dict[str, Any], configs: dict[str, dict[str, Any]], path: Path,
          engine_for: Callable[[ModelSpec], Any] | None) -> ModelPool:
    """One pool entry per model name; two steps (or ensemble members) naming one model must configure it
    identically. ``configs``: the checked model configs by :func:`model_sites` label."""
    specs: dict[str, tuple[str, ModelSpec]] = {}
    paths = {label: at for label, at, _ in model_sites(doc)}
    for step, config in configs.items():
        at = paths[step]
        try:
            spec = ModelSpec(**config)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ArtifactFormatError(path, json_path((*at, *first["loc"])), first["msg"]) from None
        first_step, prior = specs.setdefault(spec.name, (step, spec))
        if prior != spec:
            raise ArtifactFormatError(path, json_path(at), f"model {spec.name!r} is configured differently in "
                                      f"{json_path(paths[first_step])}: one name, one configuration")
    return ModelPool((spec for _, spec in specs.values()), engine_for=engine_for)


def load_artifact(path: str | Path, *, program: type[dspy.Module] | None = None,
                  trust: TrustPolicy | None = None,
                  engine_for: Callable[[ModelSpec], Any] | None = None) -> dspy.Module:
    """A runnable program from a compiled-program artifact.

    Checks, in order, before anything is built: size, JSON, format version, schema and bounds, content hash;
    each endpoint and model file against ``trust`` (default :meth:`TrustPolicy.from_env`); then the program:
    ``program`` if the caller passes the class (nothing imported), else the reference located under the
    trusted roots or a distribution the user named, its bytes hashed against ``source_sha256`` (a mismatch is
    refused unless the policy allows drift) and only then imported; finally the step names, field names and
    types. The result is a new program: a failed load leaves nothing behind, ``sys.path`` included.
    ``engine_for`` replaces the model engines (``progopt show`` captures requests with it; default: the pool's).
    Raises :class:`ArtifactError` subclasses naming the file and the JSON path."""
    path = Path(path)
    policy = trust if trust is not None else TrustPolicy.from_env()
    for note in policy.notes:
        logger.warning("%s", note)
    doc = read_artifact(path)
    configs = checked_models(doc, path, policy)
    module = _program(doc, path, policy, program)
    steps = doc["steps"]
    check_program(module, steps, path)
    for name, step in steps.items():
        try:
            make_adapter(step["format"])
        except (ImportError, ValueError) as exc:
            raise ArtifactFormatError(path, json_path(("steps", name, "format")), str(exc)) from None
    pool = _pool(doc, configs, path, engine_for)
    apply_descriptions(module, steps)
    return build_program(module, {name: step_config(step) for name, step in steps.items()}, pool.lm)
