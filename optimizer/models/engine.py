"""``LlamaEngine``: DSPy 3.4's engine interface over an in-process llama.cpp model, with constrained
decoding. DSPy keeps owning the cache, history, callbacks and usage; this engine does one call.

>>> lm = dspy.LM("local/smollm2-135m", engine=LlamaEngine(SMOLLM2), max_tokens=256, temperature=0)
"""

from __future__ import annotations

import json
import time
from typing import Any

from dspy.lm15 import Request

from optimizer.accounting import current_step
from optimizer.models import decode, local, scoring
from optimizer.models.base import LOCAL, RAW_METADATA_KEY, REGEX_METADATA_KEY, Engine, Generation
from optimizer.models.constrain import Constraint
from optimizer.models.prompt import chat_messages, completion_prompt
from optimizer.models.span_mask import SpanMask
from optimizer.spans import SPAN_METADATA_KEY


def _metadata(request: Request) -> dict[str, Any]:
    return (request.config.extensions or {}).get("metadata") or {}


def constraint_of(request: Request) -> Constraint | None:
    """The decoding constraint a request carries: a JSON-Schema ``response_format`` or a regex."""
    metadata = _metadata(request)
    if REGEX_METADATA_KEY in metadata:
        return Constraint("regex", metadata[REGEX_METADATA_KEY])
    return Constraint.from_response_format(request.config.response_format)


def prompt_text(request: Request, chat: bool) -> str | None:
    """The whole prompt text of a request, or None when it goes through a chat template as messages: a raw
    request's messages concatenated as they are, else for a base model (``chat=False``) the completion prompt.
    The one rule both the engine and ``progopt show`` follow."""
    if _metadata(request).get(RAW_METADATA_KEY):
        return "".join(m["content"] for m in chat_messages(request))
    return None if chat else completion_prompt(request)


class LlamaEngine(Engine):
    """One synchronous llama.cpp completion per request; JSON Schema or regex constrained when asked."""

    capabilities = LOCAL

    def generate(self, request: Request) -> Generation:
        model = local.load(self.spec, slot=current_step())
        cfg = request.config
        constraint = constraint_of(request)
        kwargs: dict[str, Any] = {
            "max_tokens": cfg.max_tokens or self.spec.max_tokens,
            "temperature": self.spec.temperature if cfg.temperature is None else cfg.temperature,
            "top_p": 1.0 if cfg.top_p is None else cfg.top_p,
            "stop": list(cfg.stop) or None,
            "seed": cfg.seed if cfg.seed is not None else 0,
        }
        with model.lock:
            started = time.perf_counter()
            if scoring.SCORE_METADATA_KEY in _metadata(request):
                text, finish, tokens_in, tokens_out = self._score(model, request)
            elif constraint is None:
                text, finish, tokens_in, tokens_out = self._unconstrained(model, request, kwargs)
            else:
                text, finish, tokens_in, tokens_out = self._constrained(model, request, constraint, kwargs)
            latency = time.perf_counter() - started
        return Generation(text, finish, tokens_in, tokens_out, latency)

    def _prompt_tokens(self, model: local.LocalModel, request: Request) -> tuple[list[int], list[str]]:
        """The prompt tokens llama-cpp-python would build for ``request``, and the chat template's stops."""
        text = prompt_text(request, self.spec.chat)
        if text is not None:
            return decode.prompt_tokens(model.llm, text), []
        return decode.chat_tokens(model.llm, model.chat_formatter(), chat_messages(request))

    def _constrained(self, model: local.LocalModel, request: Request, constraint: Constraint,
                     kwargs: dict[str, Any]) -> tuple[str, str, int, int]:
        """Our decoding loop (forced-token fast-forward), with the prompt llama-cpp-python would build."""
        llm = model.llm
        index, forced, _ = model.compiler.index(constraint)
        tokens, template_stop = self._prompt_tokens(model, request)
        stop = (kwargs.pop("stop") or []) + template_stop
        spans = _metadata(request).get(SPAN_METADATA_KEY)
        mask = (SpanMask(index, forced, llm.n_vocab(), model.compiler.span_vocabulary(), spans,
                         max_tokens=kwargs.get("max_tokens")) if spans else
                decode.GuidedMask(index, forced, llm.n_vocab()))
        out = decode.complete(llm, tokens, mask, stop=stop, **kwargs)
        return out.text, out.finish, out.prompt_tokens, out.completion_tokens

    def _score(self, model: local.LocalModel, request: Request) -> tuple[str, str, int, int]:
        """Label scoring (:mod:`optimizer.models.scoring`): the reply is the JSON list of each requested
        continuation's summed log-prob; its output tokens are the distinct label tokens scored."""
        tokens, _ = self._prompt_tokens(model, request)
        texts = _metadata(request)[scoring.SCORE_METADATA_KEY]
        continuations = [scoring.continuation_tokens(model.llm, text) for text in texts]
        logprobs, scored = scoring.label_logprobs(model.llm, tokens, continuations)
        return json.dumps(logprobs), "stop", len(tokens), scored

    def _unconstrained(self, model: local.LocalModel, request: Request,
                       kwargs: dict[str, Any]) -> tuple[str, str, int, int]:
        """llama-cpp-python's own completion (no constraint: nothing to fast-forward)."""
        if _metadata(request).get(RAW_METADATA_KEY):
            out = model.llm.create_completion("".join(m["content"] for m in chat_messages(request)), **kwargs)
            text = out["choices"][0]["text"]
        elif self.spec.chat:
            out = model.llm.create_chat_completion(chat_messages(request), **kwargs)
            text = out["choices"][0]["message"]["content"] or ""
        else:
            out = model.llm.create_completion(completion_prompt(request), **kwargs)
            text = out["choices"][0]["text"]
        finish = "length" if out["choices"][0].get("finish_reason") == "length" else "stop"
        usage = out.get("usage") or {}
        return text, finish, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
