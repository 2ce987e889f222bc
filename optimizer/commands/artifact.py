"""``progopt run`` and ``progopt validate``: use and check a compiled-program artifact.

    progopt run sentiment.json --input '{"sentence": "a gorgeous film"}'
    progopt run sentiment.json --inputs reviews.jsonl --out predictions.jsonl
    progopt validate sentiment.json
    progopt run other/sentiment.json --trust ../project --allow-endpoint https://api.openai.com/v1 --input ...

What an artifact may use (code, endpoints, model files) is decided by the user's options and environment,
never by the artifact: see :mod:`optimizer.artifact.trust`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dspy

from optimizer.data import DataError, check_file, read_rows
from optimizer.errors import UsageError
from optimizer.outputs import check_output, write_atomic
from optimizer.secrets import SecretDetector

if TYPE_CHECKING:
    from optimizer.artifact.trust import TrustPolicy

ERROR_KEY = "_error"  # a JSONL output line for an input that failed: {"_error": "InvalidOutput: ..."}


def prediction_json(pred: dspy.Prediction) -> dict[str, Any]:
    """A prediction's fields as plain JSON values (pydantic outputs dumped)."""
    return json.loads(json.dumps(dict(pred.items()), default=lambda o: o.model_dump(mode="json")
                                 if hasattr(o, "model_dump") else str(o)))


def _parameters(program: dspy.Module) -> set[str] | None:
    """The keyword inputs ``program`` accepts; ``None`` when its ``forward`` takes ``**kwargs``."""
    # the class attribute: reading ``program.forward`` on an instance makes DSPy warn
    params = list(inspect.signature(type(program).forward).parameters.values())[1:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _read_inputs(path: Path, accepted: set[str] | None) -> list[dict[str, Any]]:
    """One JSON object per line (see :func:`optimizer.data.read_rows`); keys the program does not take
    (labels, ids) are dropped. An input without a row is a :class:`DataError`."""
    rows = [row if accepted is None else {k: v for k, v in row.items() if k in accepted}
            for _, row in read_rows(path)]
    if not rows:
        raise DataError(path, None, "no rows")
    return rows


def _run_one(program: dspy.Module, text: str) -> int:
    try:
        inputs = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"not valid JSON ({exc.msg} at column {exc.colno})", "--input") from None
    accepted = _parameters(program)
    unknown = sorted(set(inputs) - accepted) if isinstance(inputs, dict) and accepted is not None else []
    if not isinstance(inputs, dict) or unknown:
        raise UsageError(f"must be a JSON object of the program's inputs {sorted(accepted or [])} "
                         f"(unknown: {unknown})", "--input")
    print(json.dumps(prediction_json(program(**inputs)), ensure_ascii=False))
    return 0


def _run_file(program: dspy.Module, source: Path, out: Path) -> int:
    from optimizer.evaluate import prefix_order
    from optimizer.progress import progress_bar

    rows = _read_inputs(source, _parameters(program))
    results: list[dict[str, Any]] = [{} for _ in rows]
    failed = 0
    examples = [dspy.Example(**row).with_inputs(*row) for row in rows]
    with progress_bar(f"running {len(rows)} inputs", len(rows)) as advance:
        for i in prefix_order(examples):  # consecutive calls share their prompt prefix
            try:
                results[i] = prediction_json(program(**rows[i]))
            except Exception as exc:  # noqa: BLE001 - a failed input is a recorded line, not a crash
                results[i] = {ERROR_KEY: f"{type(exc).__name__}: {exc}"}
                failed += 1
            advance(status=f"{failed} failed" if failed else "")
    write_atomic(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results))
    if failed:
        print(f"progopt run: {failed} of {len(rows)} inputs failed (lines with {ERROR_KEY!r} in {out})",
              file=sys.stderr)
    return 1 if failed else 0


def trust_policy(args: argparse.Namespace) -> TrustPolicy:
    from optimizer.artifact.endpoints import EndpointError
    from optimizer.artifact.trust import TrustPolicy

    try:
        return TrustPolicy.from_env(trust=args.trust, endpoints=args.allow_endpoint, packages=args.trust_package,
                                    model_dirs=args.allow_model_dir, allow_source_drift=args.allow_source_drift)
    except EndpointError as exc:
        raise UsageError(str(exc), "--allow-endpoint / $PROGOPT_ALLOWED_ENDPOINTS") from None


def _load(args: argparse.Namespace) -> dspy.Module:
    """The artifact's program under the user's trust options; ``--program`` names the class (no lookup)."""
    from optimizer import refs
    from optimizer.artifact import load_artifact

    program = refs.resolve(args.program) if args.program else None
    return load_artifact(args.artifact, program=program, trust=trust_policy(args))


def run(args: argparse.Namespace) -> int:
    """Load the artifact and run it on one input or on a JSONL file of inputs."""
    if args.inputs and not args.out:
        raise UsageError("needs --out FILE.jsonl", f"--inputs {args.inputs}")
    if args.inputs:
        check_output(Path(args.out), "--out", [Path(args.inputs), Path(args.artifact)])
        if Path(args.inputs).suffix.lower() not in {".jsonl", ".ndjson"}:
            raise UsageError("expects a .jsonl file", f"--inputs {args.inputs}")
        check_file(args.inputs)  # missing, or a FIFO/device/directory: refused before the artifact loads
    program = _load(args)
    if args.input is not None:
        return _run_one(program, args.input)
    return _run_file(program, Path(args.inputs), Path(args.out))


def summary_lines(doc: dict[str, Any]) -> list[str]:
    """A short human summary of a (validated) artifact document."""
    lines = [f"program  {doc['program']['ref']} (source sha256 {doc['program']['source_sha256'][:12]})",
             f"format   {doc['format_version']}, content sha256 {doc['content_sha256'][:12]}"]
    for name, step in doc["steps"].items():
        strategy = step["strategy"]
        calibration = (strategy.get("calibration") or {}).get("mode", "none")
        lines.append(f"step     {name}: {step['model']['name']}, {strategy['name']} (samples {strategy['samples']}"
                     f"{', calibration ' + calibration if calibration != 'none' else ''}), "
                     f"format {step['format']}, {len(step['demos'])} demos")
    for split, m in doc["metrics"].items():
        if m is not None:
            lo, hi = m["score_ci"]
            lines.append(f"{split:<8} score {m['score']:.3f} [{lo:.3f}, {hi:.3f}] on {m['examples']} examples, "
                         f"validity {m['validity_rate']:.0%}, ${m['cost_per_example']:.2e}/example, "
                         f"p50 {m['latency_p50_s']:.3f}s, p95 {m['latency_p95_s']:.3f}s, {m['lm_calls']} LM calls")
    return lines


def validate(args: argparse.Namespace) -> int:
    """Every load check without calling a model: size, schema and bounds, hash, version, each endpoint and
    model file against the trust options, the program's source hash and signatures (its code is imported only
    from a trusted root or an installed distribution, or named by ``--program``). Prints what it would use."""
    from optimizer.artifact import ArtifactError, read_artifact
    from optimizer.artifact.trust import uses

    try:
        doc = read_artifact(args.artifact)
        _load(args)
    except ArtifactError as exc:
        print(SecretDetector().mask(f"INVALID {type(exc).__name__}: {exc}"), file=sys.stderr)
        return 2
    policy = trust_policy(args)
    print("\n".join([f"OK {args.artifact}", *summary_lines(doc), *uses(doc, policy), *policy.notes]))
    return 0


def add_trust_arguments(p: argparse.ArgumentParser) -> None:
    """The options that decide what an artifact may use (see :mod:`optimizer.artifact.trust`)."""
    p.add_argument("--program", help="the program class as file.py:Name or module:Name (default: the artifact's "
                   "reference, run only from a trusted root or a trusted distribution)")
    p.add_argument("--trust", action="append", default=[], metavar="DIR",
                   help="also run program code from DIR (besides $PROGOPT_TRUST and the roots `progopt compile` "
                   "recorded in ~/.config/progopt/trust.toml)")
    p.add_argument("--trust-package", action="append", default=[], metavar="DIST",
                   help="also run program modules of the installed distribution DIST (also "
                   "$PROGOPT_TRUST_PACKAGES; no installed package is trusted otherwise)")
    p.add_argument("--allow-endpoint", action="append", default=[], metavar="URL",
                   help="let the artifact's api_base use this endpoint (prefix); loopback is allowed by default "
                   "unless $PROGOPT_ALLOWED_ENDPOINTS replaces it")
    p.add_argument("--allow-model-dir", action="append", default=[], metavar="DIR",
                   help="let the artifact load .gguf files from DIR (also $PROGOPT_MODEL_DIRS)")
    p.add_argument("--allow-source-drift", action="store_true",
                   help="run a program whose source changed since the artifact was saved (warns; default: refuse)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a compiled artifact on one input or a JSONL file of inputs")
    p.add_argument("artifact", help="compiled-program JSON artifact")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help='one input as a JSON object, e.g. \'{"sentence": "a gorgeous film"}\'')
    source.add_argument("--inputs", help="JSONL file, one input object per line (other keys are ignored)")
    p.add_argument("--out", help="JSONL file for the predictions, one line per input (with --inputs)")
    add_trust_arguments(p)
    p.set_defaults(func=run)
    v = sub.add_parser("validate", help="check an artifact (schema, bounds, hash, trust, signatures) and list the "
                       "code, endpoints and model files it would use")
    v.add_argument("artifact", help="compiled-program JSON artifact")
    add_trust_arguments(v)
    v.set_defaults(func=validate)
