"""Export an artifact's steps as requests that run without progopt: OpenAI-compatible request templates,
plain-text templates, or prompts in MLflow's Prompt Registry.

Every template is a captured request (:mod:`optimizer.artifact.prompts`), with ``{{field}}`` placeholders for
the step's inputs: what progopt sends, not a paraphrase. A step progopt runs in a way a plain request cannot
(label scoring, calibration, self-consistency, per-input retrieved demos) says so in its ``notes`` and exports
its nearest ``direct`` request instead; a constraint a request cannot carry is said too: never silently.

>>> export_openai(step_views("out/sst2.json"))["classify"]["endpoint"]    # Gemma, a base model
'/v1/completions'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from optimizer.artifact.gbnf import regex_to_gbnf
from optimizer.artifact.prompts import StepView, fill


def _sent(view: StepView) -> StepView:
    """The view whose request an export sends: the step's own, or its nearest direct one."""
    return view.direct or view


def _response_format(view: StepView) -> dict[str, Any] | None:
    if view.constraint is None or view.constraint[0] != "json_schema":
        return None
    schema = view.constraint[1]
    return {"type": "json_schema", "json_schema": {"name": schema.get("title", "output"), "schema": schema,
                                                   "strict": True}}


def openai_request(view: StepView) -> dict[str, Any]:
    """One step as ``{"endpoint", "body", "variables", "notes"}``: a chat-completions body (messages) for a chat
    or API model, a completions body (the whole prompt) for a local base model. The constraint travels the
    way the step's server takes it: an API model's JSON Schema as OpenAI's ``response_format``; a local
    model's constraint (JSON Schema or regex) as ``grammar``, since a local model file runs outside progopt
    only behind a llama.cpp server, whose OpenAI-compatible API takes grammars (and, in llama-cpp-python's
    server, no ``json_schema`` response format)."""
    sent = _sent(view)
    body: dict[str, Any] = {"model": view.model["name"].split("/", 1)[-1], "temperature": sent.temperature or 0.0,
                            "max_tokens": sent.max_tokens}
    notes = list(view.notes)
    endpoint = "/v1/chat/completions" if sent.prompt is None else "/v1/completions"
    body["messages" if sent.prompt is None else "prompt"] = sent.messages if sent.prompt is None else sent.prompt
    if view.model["provider"] == "local":
        grammar = _grammar(sent, notes)
        if grammar:
            body["grammar"] = grammar
    elif _response_format(sent):
        body["response_format"] = _response_format(sent)
    elif sent.constraint:
        notes.append(f"the {sent.constraint[0]} constraint has no OpenAI request field: the request runs "
                     "unconstrained")
    return {"endpoint": endpoint, "body": body, "variables": view.variables, "notes": notes}


def _grammar(view: StepView, notes: list[str]) -> str | None:
    """llama.cpp's ``grammar`` for the step's constraint (a JSON Schema with llama-cpp-python's converter, a
    regex with :func:`regex_to_gbnf`), or None with a note when there is none or it has no grammar form."""
    if view.constraint is None:
        return None
    kind, pattern = view.constraint
    try:
        if kind == "json_schema":
            from llama_cpp.llama_grammar import json_schema_to_gbnf

            grammar = json_schema_to_gbnf(json.dumps(pattern))
        else:
            grammar = regex_to_gbnf(pattern)
    except ValueError as exc:
        notes.append(f"the {kind} constraint has no grammar form ({exc}): the request runs unconstrained")
        return None
    notes.append(f"a local model: its {kind} constraint is sent as llama.cpp's `grammar` (llama.cpp's servers "
                 "honour it; OpenAI's API has no such field)")
    return grammar


def export_openai(views: Mapping[str, StepView]) -> dict[str, dict[str, Any]]:
    return {name: openai_request(view) for name, view in views.items()}


def text_template(view: StepView) -> str:
    """One step as plain text: a base model's whole prompt, or a chat model's messages under ``### role``
    headings, followed by its output constraint and notes as comments."""
    sent = _sent(view)
    body = sent.prompt if sent.prompt is not None else "\n\n".join(
        f"### {m['role']}\n{m['content']}" for m in sent.messages)
    lines = [f"# step {view.step}: model {view.model['name']}, format {view.format}, "
             f"strategy {view.strategy['name']}, {view.demos} demos; variables: {', '.join(view.variables)}"]
    if sent.constraint:
        lines.append(f"# output constrained by {sent.constraint[0]}")
    lines += [f"# note: {n}" for n in view.notes]
    return "\n".join(lines) + "\n" + body


def render(request: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """An exported request body with its ``{{field}}`` placeholders filled (what a client sends)."""
    body = dict(request["body"])
    if "messages" in body:
        body["messages"] = [{**m, "content": fill(m["content"], values)} for m in body["messages"]]
    if "prompt" in body:
        body["prompt"] = fill(body["prompt"], values)
    return body


def register_mlflow(views: Mapping[str, StepView], *, name: str, artifact_sha256: str,
                    run_id: str | None = None) -> dict[str, Any]:
    """Registers each step in MLflow's Prompt Registry as ``{name}.{step}`` (the tracking URI is the user's:
    ``MLFLOW_TRACKING_URI``): its chat template (a base model's prompt as one user message, flagged), its
    ``response_format`` and ``model_config``, tagged with the artifact's content hash and the compile's run.
    Returns ``{step: prompt URI}``."""
    import mlflow.genai

    uris = {}
    for step, view in views.items():
        sent = _sent(view)
        template = sent.messages if sent.prompt is None else [{"role": "user", "content": sent.prompt}]
        tags = {"progopt.artifact_sha256": artifact_sha256, "progopt.step": step, "progopt.format": view.format,
                "progopt.strategy": view.strategy["name"], "progopt.raw_prompt": str(sent.prompt is not None),
                "progopt.template_sha256": hashlib.sha256(repr(template).encode()).hexdigest()}
        if run_id:
            tags["progopt.run_id"] = run_id
        if view.notes:
            tags["progopt.notes"] = " | ".join(view.notes)[:5000]
        version = mlflow.genai.register_prompt(
            name=f"{name}.{step}".replace("/", "-"), template=template, tags=tags,
            response_format=_response_format(sent)["json_schema"]["schema"] if _response_format(sent) else None,
            model_config={"model_name": view.model["name"], "temperature": sent.temperature or 0.0,
                          "max_tokens": sent.max_tokens},
            commit_message=f"progopt export of artifact {artifact_sha256[:12]}, step {step}")
        uris[step] = f"prompts:/{version.name}/{version.version}"
    return uris
