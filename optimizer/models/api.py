"""``ApiEngine``: any LiteLLM model string behind the same engine interface and accounting as local
models. The output schema goes as ``response_format``; DSPy's adapter validates the reply with pydantic.
Keys come from the provider's environment variables, never from a spec, an artifact or a log."""

from __future__ import annotations

import time
from typing import Any

from dspy.lm15 import Request

from optimizer.models.base import Engine, Generation
from optimizer.models.prompt import chat_messages
from optimizer.models.spec import import_litellm

TIMEOUT_S = 120


def _dialect(response_format: dict[str, Any], style: str) -> dict[str, Any]:
    """Put a ``json_schema`` response format on the wire in the server's dialect. DSPy's request carries it
    flat (``{"type": "json_schema", "schema": ..., "name": ...}``); OpenAI wants it nested under
    ``json_schema``, llama.cpp's server as ``{"type": "json_object", "schema": ...}``."""
    if response_format.get("type") != "json_schema":
        return response_format
    body = response_format.get("json_schema", response_format)
    schema = body.get("schema", {})
    if style == "json_object":
        return {"type": "json_object", "schema": schema}
    nested = {"name": body.get("name", "output"), "schema": schema}
    if "strict" in body:
        nested["strict"] = body["strict"]
    return {"type": "json_schema", "json_schema": nested}


class ApiEngine(Engine):
    """One ``litellm.completion`` per request."""

    def generate(self, request: Request) -> Generation:
        litellm = import_litellm()
        cfg = request.config
        body: dict[str, Any] = {
            "model": self.spec.name, "messages": chat_messages(request), "timeout": TIMEOUT_S,
            "max_tokens": cfg.max_tokens or self.spec.max_tokens,
            "temperature": self.spec.temperature if cfg.temperature is None else cfg.temperature,
        }
        if cfg.seed is not None:
            body["seed"] = cfg.seed
        if cfg.stop:
            body["stop"] = list(cfg.stop)
        if cfg.response_format and self.spec.schema_style != "none":
            body["response_format"] = _dialect(cfg.response_format, self.spec.schema_style)
        if self.spec.api_base:
            body["api_base"] = self.spec.api_base
        started = time.perf_counter()
        reply = litellm.completion(**body)
        latency = time.perf_counter() - started
        choice = reply.choices[0]
        text = choice.message.content or ""
        finish = "length" if choice.finish_reason == "length" else "stop"
        tokens_in = getattr(reply.usage, "prompt_tokens", 0) or 0
        tokens_out = getattr(reply.usage, "completion_tokens", 0) or 0
        return Generation(text, finish, tokens_in, tokens_out, latency)
