"""A call journal: every model output of a long job, appended to a JSON Lines file as it arrives, so a rerun of
the job (on this machine or on a fresh clone that has the file) replays what was already paid for.

DSPy's response cache does this on one machine; the journal is the part small enough to commit (outputs keyed
by request digest, no prompts, no pickles), which is what lets a sweep cell longer than one working session
finish in pieces. Lifecycle: :class:`CallJournal` reads the file once when opened; :class:`JournalEngine` answers
a request from it when its digest is there, else asks the engine it wraps and appends the output (flushed per
line, so a kill loses at most the call in flight; a torn last line is skipped on the next read). A replayed
call is counted like a real one (:meth:`Engine.reserve`) and reports the recorded latency, so budgets and
per-call metrics are those of the first run; it takes no model time."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from dspy.lm15 import Request, Response, response_to_events

from optimizer.models.base import Engine, Generation
from optimizer.models.replay import request_digest

FIELDS = ("text", "finish", "tokens_in", "tokens_out", "latency")


class CallJournal:
    """The outputs recorded in ``path`` by digest (thread-safe; one writing process per file)."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        self.skipped = 0  # unreadable lines (a torn last line after a kill)
        self._lock = threading.Lock()
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        self._torn = bool(text) and not text.endswith("\n")  # the next line must not extend the torn one
        for line in text.splitlines():
            try:
                entry = json.loads(line)
                self.entries[entry["digest"]] = {k: entry[k] for k in FIELDS}
            except (ValueError, KeyError, TypeError):
                self.skipped += 1

    def get(self, digest: str) -> Generation | None:
        entry = self.entries.get(digest)
        return Generation(**entry) if entry is not None else None

    def append(self, digest: str, generation: Generation) -> None:
        entry = {k: getattr(generation, k) for k in FIELDS}
        with self._lock:
            self.entries[digest] = entry
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write("\n" * self._torn + json.dumps({"digest": digest, **entry}) + "\n")
            self._torn = False


class JournalEngine:
    """``inner`` with ``journal`` in front (see the module docstring). A wrapper: spec, capabilities and the
    request checks are the inner engine's."""

    supports_response_schema = True
    supported_params = Engine.supported_params

    def __init__(self, inner: Engine, journal: CallJournal):
        self.inner, self.journal = inner, journal
        self.spec, self.capabilities = inner.spec, inner.capabilities

    def complete(self, request: Request) -> Response:
        digest = request_digest(request)
        recorded = self.journal.get(digest)
        if recorded is not None:
            self.inner.validate(request)
            self.inner.reserve()
            return self.inner.finish(request, recorded)
        response = self.inner.complete(request)
        data = response.provider_data or {}
        self.journal.append(digest, Generation(
            response.message.text, data.get("finish_reason", "stop"), response.usage.input_tokens,
            response.usage.output_tokens, data.get("latency_s", 0.0)))
        return response

    def stream(self, request: Request) -> Any:
        return response_to_events(self.complete(request))

    def close(self) -> None:
        self.inner.close()
