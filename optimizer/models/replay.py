"""Record/replay of LM outputs for deterministic optimizer tests (as DSPy's own tests replay histories).

``RecordingEngine`` wraps a real engine and stores each output by request digest; ``ReplayEngine``
answers from such a recording and fails loudly on a request it has not seen. Both count calls through
the same accounting as real engines, so budgets behave identically, and declare the capabilities of the
engine that recorded, so adapters take the same path (a local model's regex path too)."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from dspy.lm15 import Request, Response, response_to_events

from optimizer.models.base import API, LOCAL, Capabilities, Engine, Generation
from optimizer.models.prompt import chat_messages
from optimizer.models.spec import ModelSpec


def request_digest(request: Request) -> str:
    """sha256 over the model, messages and generation settings that decide the output."""
    cfg = request.config
    body = {"model": request.model, "messages": chat_messages(request), "max_tokens": cfg.max_tokens,
            "temperature": cfg.temperature, "seed": cfg.seed, "response_format": cfg.response_format,
            "extensions": cfg.extensions}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


class ReplayEngine(Engine):
    """Answers from a recording ``{digest: {"text", "input_tokens", "output_tokens", "latency_s"}}``.

    It stands in for the engine that recorded: ``capabilities`` default to the real engine's for the spec's
    provider (a local model's regex and raw-prompt paths included), so adapters send the same requests."""

    def __init__(self, spec: ModelSpec, recording: dict[str, dict[str, Any]],
                 capabilities: Capabilities | None = None):
        super().__init__(spec)
        self.recording = recording
        self.capabilities = capabilities or (LOCAL if spec.provider == "local" else API)  # type: ignore[misc]

    def generate(self, request: Request) -> Generation:
        digest = request_digest(request)
        if digest not in self.recording:
            raise KeyError(f"no recorded output for this {self.spec.name} request ({digest[:12]}); re-record")
        rec = self.recording[digest]
        return Generation(rec["text"], "stop", rec["input_tokens"], rec["output_tokens"], rec["latency_s"])


class RecordingEngine:
    """Passes requests to ``inner`` and records each output into ``recording`` (shared, thread-safe).
    A wrapper: the inner engine counts the call; its spec and capabilities are forwarded."""

    supports_response_schema = True
    supported_params = Engine.supported_params

    def __init__(self, inner: Engine, recording: dict[str, dict[str, Any]]):
        self.inner, self.recording, self._lock = inner, recording, threading.Lock()
        self.spec, self.capabilities = inner.spec, inner.capabilities

    def complete(self, request: Request) -> Response:
        response = self.inner.complete(request)
        with self._lock:
            self.recording[request_digest(request)] = {
                "text": response.message.text, "input_tokens": response.usage.input_tokens,
                "output_tokens": response.usage.output_tokens,
                "latency_s": (response.provider_data or {}).get("latency_s", 0.0)}
        return response

    def stream(self, request: Request) -> Any:
        return response_to_events(self.complete(request))

    def close(self) -> None:
        """The inner engine is shared."""


def load_recording(path: str | Path) -> dict[str, dict[str, Any]]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save_recording(recording: dict[str, dict[str, Any]], path: str | Path) -> None:
    Path(path).write_text(json.dumps(recording, indent=0, sort_keys=True), encoding="utf-8")
