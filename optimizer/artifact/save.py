"""Write compiled-program artifacts: validated against the schema, free of secrets, hashed, atomic.

>>> save_result(result, "sentiment.json", program=Sentiment(), pool=pool)
>>> save_artifact("sentiment.json", program_ref="programs/sentiment.py:Sentiment", program=Sentiment(),
...               steps={"classify": config}, models={config.model: GEMMA3}, metrics={}, provenance={})
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dspy

from optimizer import refs
from optimizer.artifact.errors import ArtifactError, ArtifactFormatError, ArtifactIntegrityError, ArtifactSecretError
from optimizer.artifact.schema import (
    FORMAT_VERSION,
    HASH_KEY,
    check_text,
    content_hash,
    json_path,
    model_sites,
    schema,
    validate,
)
from optimizer.artifact.signature import check_program, describe_step
from optimizer.models.pool import ModelPool
from optimizer.models.spec import ModelSpec
from optimizer.outputs import write_atomic
from optimizer.records import CompileResult
from optimizer.secrets import SecretDetector
from optimizer.space.variant import StepConfig

PACKAGES = ("dspy", "optuna", "outlines", "llama-cpp-python", "progopt")
PROVENANCE_INPUTS = ("tracking_run_id", "datasets", "seed")
METRIC_SPLITS = ("validation", "test")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape a compiled program's behaviour."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(directory: Path) -> str | None:
    """The commit checked out in the git repository holding ``directory``, if any."""
    try:
        out = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _metric_set(summary: Mapping[str, Any] | None, path: Path, split: str) -> dict[str, Any] | None:
    """The schema's metric keys of an ``Evaluation.summary()`` dict (per-model breakdowns are left out)."""
    if summary is None:
        return None
    keys = schema()["$defs"]["metricSet"]["required"]
    missing = [k for k in keys if k not in summary]
    if missing:
        raise ArtifactFormatError(path, json_path(("metrics", split, missing[0])), "missing from the summary")
    return {k: summary[k] for k in keys}


def _provenance(provenance: Mapping[str, Any], program_ref: str, path: Path) -> dict[str, Any]:
    for key in provenance:
        if key not in PROVENANCE_INPUTS:
            raise ArtifactFormatError(path, json_path(("provenance", key)),
                                      f"unknown provenance key (give only {', '.join(PROVENANCE_INPUTS)})")
    source = Path(refs.module_of(program_ref).__file__).parent  # type: ignore[arg-type]
    return {"tracking_run_id": provenance.get("tracking_run_id"), "datasets": dict(provenance.get("datasets") or {}),
            "seed": provenance.get("seed"), "packages": package_versions(), "git_commit": git_commit(source)}


def _strings(value: Any, at: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        return [(at, value)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [*_strings(k, at), *_strings(v, (*at, k))]]
    if isinstance(value, list):
        return [s for i, v in enumerate(value) for s in _strings(v, (*at, i))]
    return []


def check_secrets(doc: dict[str, Any], path: Path) -> None:
    """Refuse credentials anywhere in the document (keys and values): user info, a query or a fragment in an
    ``api_base``, and whatever :class:`~optimizer.secrets.SecretDetector` finds (key shapes, secret-named
    values, the values of secret environment variables). The error names the field, never the value."""
    for _, at, model in model_sites(doc):
        base = model.get("api_base")
        if base:
            url = urlsplit(base)
            if url.username or url.password or url.query or url.fragment or "@" in url.netloc:
                raise ArtifactSecretError(path, json_path((*at, "api_base")),
                                          "an API base URL may not carry user info, a query or a fragment: "
                                          "keys come from the provider's environment variables")
    detector = SecretDetector()
    for at, text in _strings(doc):
        kind = next((kind for kind, _ in detector.find(text)), None)
        if kind is not None:
            raise ArtifactSecretError(path, json_path(at), f"contains {kind}; an artifact never carries a secret")


def save_artifact(path: str | Path, *, program_ref: str, program: dspy.Module, steps: Mapping[str, StepConfig],
                  models: Mapping[str, ModelSpec], metrics: Mapping[str, Mapping[str, Any] | None],
                  provenance: Mapping[str, Any]) -> Path:
    """Write ``program`` (the unconfigured program ``program_ref`` names) with one :class:`StepConfig` per
    step as a v1 artifact. ``models`` maps each step's model name to its :class:`ModelSpec`; ``metrics`` has
    ``validation``/``test`` ``Evaluation.summary()`` dicts; ``provenance`` may give ``tracking_run_id``,
    ``datasets`` (split -> hash) and ``seed`` (package versions and the git commit are added).

    The document is checked as a loader would check it (schema, no secrets, the reference re-imports with the
    same signatures) before it atomically replaces ``path``."""
    path = Path(path)
    predictors = dict(program.named_predictors())
    if set(steps) != set(predictors):
        raise ArtifactFormatError(path, "steps", f"configure every step: the program has {sorted(predictors)}, "
                                  f"got {sorted(steps)}")
    for key in metrics:
        if key not in METRIC_SPLITS:
            raise ArtifactFormatError(path, json_path(("metrics", key)), "unknown split (use validation, test)")
    step_docs = {}
    for name, config in steps.items():
        spec = models.get(config.model)
        if spec is None or spec.name != config.model:
            raise ArtifactFormatError(path, json_path(("steps", name, "model", "name")),
                                      f"no ModelSpec named {config.model!r} in models")
        missing = next((m.model for m in config.members if m.model not in models), None)
        if missing is not None:
            raise ArtifactFormatError(path, json_path(("steps", name, "members")), f"no ModelSpec named {missing!r} "
                                      "in models")
        try:
            step_docs[name] = describe_step(predictors[name].signature, config, spec,
                                            [models[m.model] for m in config.members])
        except Exception as exc:  # noqa: BLE001 - pydantic cannot describe a field's type
            raise ArtifactFormatError(path, json_path(("steps", name, "signature")),
                                      f"{type(exc).__name__}: {exc}") from exc
    try:
        program_doc = {"ref": refs.portable(program_ref), "source_sha256": refs.source_hash(program_ref)}
        program_class = refs.resolve(program_ref)
    except ImportError as exc:
        raise ArtifactFormatError(path, "program.ref", str(exc)) from exc
    doc: dict[str, Any] = {
        "format_version": FORMAT_VERSION, HASH_KEY: "", "program": program_doc, "steps": step_docs,
        "metrics": {split: _metric_set(metrics.get(split), path, split) for split in METRIC_SPLITS},
        "provenance": _provenance(provenance, program_ref, path),
    }
    check_text(doc, path)  # a lone surrogate (in an instruction, a demo) cannot be UTF-8, so cannot be hashed
    try:
        doc[HASH_KEY] = content_hash(doc)
    except ValueError as exc:  # NaN or infinity in metrics
        raise ArtifactFormatError(path, "metrics", str(exc)) from exc
    check_secrets(doc, path)
    validate(doc, path)
    check_program(program_class(), step_docs, path)
    write_atomic(path, json_dumps(doc))
    return path


def json_dumps(doc: dict[str, Any]) -> str:
    """The artifact file text: indented, UTF-8, newline-terminated (the hash does not depend on layout)."""
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def save_result(result: CompileResult, path: str | Path, *, program: dspy.Module | None = None,
                pool: ModelPool | None = None) -> Path:
    """Save the variant a compile chose (the one way to save a compile): its steps, its validation ("full",
    else baseline) and test metrics, the compile's seed, dataset hashes and tracking run id. Refuses a program
    source changed since the compile. ``program`` defaults to a fresh instance of the compiled program's
    class, ``pool`` to the compile's own (``result.models``)."""
    if program is None:
        program = refs.resolve(result.program)()
    if pool is None:
        pool = ModelPool(result.models.values()) if result.models else ModelPool.default()
    current = refs.source_hash(result.program)
    if current != result.program_hash:
        raise ArtifactIntegrityError(path, "program.source_sha256", f"{result.program} changed since the compile "
                                     f"(compiled {result.program_hash}, now {current}); compile again")
    steps = result.chosen_steps()
    chosen = [t for t in [*result.baselines, *result.trials] if t.variant_key == result.chosen]
    validation = next((t for t in reversed(chosen) if t.stage == "full"), None) or next(
        (t for t in chosen if t.stage in ("final", "baseline")), None)  # an ensemble exists at the final stage only
    test = next((t for t in reversed(result.test) if t.variant_key == result.chosen), None)
    try:
        models = {m.model: pool[m.model] for c in steps.values() for m in (c, *c.members)}
    except KeyError as exc:
        raise ArtifactError(path, "steps", str(exc)) from exc
    return save_artifact(path, program_ref=result.program, program=program, steps=steps, models=models,
                         metrics={"validation": validation and validation.summary.model_dump(),
                                  "test": test and test.summary.model_dump()},
                         provenance={"tracking_run_id": result.tracking_run_id, "datasets": result.datasets,
                                     "seed": result.seed})
