"""What every engine does after a model call: account for it and wrap the text as a DSPy Response.

The latency and finish reason travel in ``provider_data`` so that DSPy caches them with the response and
a later cache hit still reports what the call cost and how long it took."""

from __future__ import annotations

from dspy.lm15 import Message, Request, Response, Usage

from optimizer.accounting import report_engine_call
from optimizer.models.spec import ModelSpec


def finish_call(spec: ModelSpec, request: Request, text: str, *, finish: str, tokens_in: int, tokens_out: int,
                latency: float) -> Response:
    """Report the call to the accounting and build the engine's Response."""
    report_engine_call(spec, tokens_in, tokens_out, latency, finish, text)
    return Response(id=None, model=request.model, message=Message.assistant(text), finish_reason=finish,  # type: ignore[arg-type]
                    usage=Usage(input_tokens=tokens_in, output_tokens=tokens_out),
                    provider_data={"latency_s": latency, "finish_reason": finish})
