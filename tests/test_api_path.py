"""API models through LiteLLM over real HTTP: llama-cpp-python's OpenAI-compatible server on loopback."""

import json

import pytest

from optimizer.evaluate import evaluate
from optimizer.models import ModelPool
from programs.sentiment import TASK, Sentiment, metric


@pytest.mark.slow
def test_litellm_model_string_joins_the_pool_and_outputs_validate(llama_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-secret")
    pool = ModelPool.from_names(["openai/smollm2"], api_base=llama_server, schema_style="json_object")
    ev = evaluate(Sentiment(), TASK.load("test", limit=10), metric, lm=pool.lm("openai/smollm2"),
                  show_progress=False)
    summary = ev.summary()
    assert summary.validity_rate == 1.0 and summary.lm_calls == 10
    assert all(r.prediction["sentiment"] in {"negative", "positive"} for r in ev.results)
    assert summary.input_tokens > 0 and all(not c.cached for c in ev.calls)


@pytest.mark.parametrize("flat", [True, False])
def test_schema_goes_on_the_wire_in_each_servers_dialect(flat):
    from optimizer.models.api import _dialect

    schema = {"type": "object", "properties": {"label": {"enum": ["a", "b"]}}}
    body = {"name": "Out", "schema": schema, "strict": True}
    given = {"type": "json_schema", **body} if flat else {"type": "json_schema", "json_schema": body}
    assert _dialect(given, "json_object") == {"type": "json_object", "schema": schema}
    assert _dialect(given, "json_schema") == {"type": "json_schema", "json_schema": body}
    assert _dialect({"type": "text"}, "json_object") == {"type": "text"}


@pytest.mark.slow
def test_api_examples_run_concurrently_each_with_its_own_calls(llama_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-secret")
    pool = ModelPool.from_names(["openai/smollm2"], api_base=llama_server, schema_style="json_object")
    examples = TASK.load("test", limit=22)[10:]
    parallel = evaluate(Sentiment(), examples, metric, lm=pool.lm("openai/smollm2"), threads=4, show_progress=False)
    assert [r.index for r in parallel.results] == list(range(12))
    assert parallel.summary().lm_calls == 12 and parallel.summary().validity_rate == 1.0
    for r in parallel.results:  # every example's ledger holds its own call, not a neighbour's
        assert len(r.calls) == 1 and not r.calls[0].cached
        assert json.loads(r.calls[0].text)["sentiment"] == r.prediction["sentiment"]
    sequential = evaluate(Sentiment(), examples, metric, lm=pool.lm("openai/smollm2"), show_progress=False)
    assert [r.prediction for r in sequential.results] == [r.prediction for r in parallel.results]
    assert all(c.cached for c in sequential.calls)
