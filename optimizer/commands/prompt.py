"""``progopt show`` and ``progopt export``: an artifact's steps exactly as their models receive them, and as
requests that run without progopt. Both are static: they load the artifact under the same trust options as
``validate`` (its program code only from a root you chose), open no model file and send nothing, except
``export --to mlflow``, which registers prompts with your MLflow tracking server."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from optimizer.commands.artifact import add_trust_arguments, trust_policy
from optimizer.errors import UsageError
from optimizer.outputs import write_atomic


def _inputs(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"not valid JSON ({exc.msg} at column {exc.colno})", "--input") from None
    if not isinstance(value, dict):
        raise UsageError("must be a JSON object of the step's inputs", "--input")
    return value


def _views(args: argparse.Namespace) -> dict[str, Any]:
    from optimizer import refs
    from optimizer.artifact.prompts import step_views

    program = refs.resolve(args.program) if args.program else None
    try:
        return step_views(args.artifact, inputs=_inputs(getattr(args, "input", None)),
                          step=getattr(args, "step", None), trust=trust_policy(args), program=program)
    except KeyError as exc:
        raise UsageError(str(exc.args[0]), "--step") from None


def _describe(view: Any) -> list[str]:
    strategy = view.strategy
    calibration = (strategy.get("calibration") or {}).get("mode", "none")
    kind = "raw prompt (base model)" if view.prompt is not None else "chat messages"
    lines = [f"== step {view.step}: model {view.model['name']} ({kind}), format {view.format}, strategy "
             f"{strategy['name']} (samples {strategy['samples']}, temperature {strategy['temperature']}"
             f"{', calibration ' + calibration if calibration != 'none' else ''}), {view.demos} demos, "
             f"max_tokens {view.max_tokens}"]
    constraint = (view.direct or view).constraint
    if strategy["name"] == "score" and (strategy.get("calibration") or {}).get("prior"):
        lines.append(f"labels and prior: {json.dumps(strategy['calibration']['prior'])}")
    if constraint:
        pattern = json.dumps(constraint[1]) if constraint[0] == "json_schema" else repr(constraint[1])
        lines.append(f"output constraint ({constraint[0]}): {pattern}")
    body = view.prompt if view.prompt is not None else "\n".join(
        f"--- {m['role']} ---\n{m['content']}" for m in view.messages)
    lines += ["--- prompt ---" if view.prompt is not None else "", body, "--- end ---"]
    lines += [f"note: {n}" for n in view.notes]
    return [line for line in lines if line != ""]


def show(args: argparse.Namespace) -> int:
    """Print each step's request (or ``--step``'s): prompt or messages with demos, constraint, model, strategy
    and calibration, for ``--input`` or with ``{{field}}`` placeholders."""
    views = _views(args)
    if args.json:
        from dataclasses import asdict

        print(json.dumps({name: asdict(view) for name, view in views.items()}, indent=1, ensure_ascii=False))
    else:
        print("\n".join(line for view in views.values() for line in _describe(view)))
    return 0


def export(args: argparse.Namespace) -> int:
    """Write per-step request templates (``openai``: JSON; ``text``: plain text) to ``--out`` or stdout, or
    register them in MLflow's Prompt Registry (``mlflow``)."""
    from optimizer.artifact.export import export_openai, register_mlflow, text_template
    from optimizer.artifact.load import read_artifact

    views = _views(args)
    if args.to == "mlflow":
        from optimizer.tracking.model import using_tracking_uri

        doc = read_artifact(args.artifact)
        name = args.name or Path(args.artifact).stem
        with using_tracking_uri(args.tracking_uri):
            uris = register_mlflow(views, name=name, artifact_sha256=doc["content_sha256"], run_id=args.run_id)
        print(json.dumps(uris, indent=1))
        return 0
    if args.to == "openai":
        text = json.dumps(export_openai(views), indent=1, ensure_ascii=False) + "\n"
    else:
        text = "\n\n".join(text_template(view) for view in views.values()) + "\n"
    if args.out:
        write_atomic(Path(args.out), text)
    else:
        sys.stdout.write(text)
    for view in views.values():
        for note in view.notes:
            print(f"progopt export: step {view.step}: {note}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("show", help="print each step exactly as its model receives it (static: no model runs)")
    s.add_argument("artifact", help="compiled-program JSON artifact")
    s.add_argument("--step", help="only this step")
    s.add_argument("--input", help="the step's inputs as a JSON object (default: {{field}} placeholders)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    add_trust_arguments(s)
    s.set_defaults(func=show)
    e = sub.add_parser("export", help="export each step as a request that runs without progopt")
    e.add_argument("artifact", help="compiled-program JSON artifact")
    e.add_argument("--to", required=True, choices=["openai", "text", "mlflow"],
                   help="openai: OpenAI-compatible request templates (JSON); text: plain-text templates; "
                   "mlflow: register each step in MLflow's Prompt Registry")
    e.add_argument("--out", help="file to write (openai, text; default: stdout)")
    e.add_argument("--step", help="only this step")
    e.add_argument("--name", help="mlflow: prompt name prefix (default: the artifact's file name)")
    e.add_argument("--run-id", help="mlflow: the compile's MLflow run, recorded as a tag")
    e.add_argument("--tracking-uri", help="mlflow: tracking URI (default: $MLFLOW_TRACKING_URI)")
    add_trust_arguments(e)
    e.set_defaults(func=export)
