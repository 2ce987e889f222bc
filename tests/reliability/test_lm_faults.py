"""Injected LM faults (timeouts, exceptions, 429 with retry-after, 503, empty and truncated output, slow
calls) under whole compiles on replayed outputs, under the real local model and under the loopback
llama.cpp server through LiteLLM: retries stay within the budget, failed examples count as failures, a
variant whose calls keep failing is failed, and every compile ends with a valid result."""

from __future__ import annotations

import http.server
import json
import tempfile
import threading

import optuna
import pytest
from dspy.lm15 import Message, Request, Response, Usage
from optuna.trial import TrialState

from optimizer import runtime
from optimizer.accounting import EngineMeter, ModelUnavailable, metered
from optimizer.evaluate import evaluate
from optimizer.models import ModelPool
from optimizer.models.api import ApiEngine
from optimizer.models.engine import LlamaEngine
from optimizer.models.faults import FaultPlan, faulty
from optimizer.models.replay import ReplayEngine, load_recording
from optimizer.models.retry import RateLimited, Resilient, RetryPolicy
from optimizer.records import CompileResult
from optimizer.search.compile import Budget, SearchSettings, SpaceSettings, compile
from programs.sentiment import TASK, Sentiment, metric
from tests.fixtures.search_case import RECORDING
from tests.reliability.conftest import size

FAST = RetryPolicy(attempts=4, timeout_s=0.5, base_s=0.001, max_wait_s=0.02)
COMPILES = size("PROGOPT_FAULT_COMPILES", 4)


def _replay_pool(plan: FaultPlan, fail_model: str | None = None) -> ModelPool:
    recording = load_recording(RECORDING)
    engine = faulty(ReplayEngine, plan, FAST)
    broken = faulty(ReplayEngine, FaultPlan(1.0, 0, kinds=("exception",)), FAST)
    return ModelPool(ModelPool.default().specs.values(),
                     engine_for=lambda spec: (broken if spec.name == fail_model else engine)(spec, recording))


def _compile(pool: ModelPool, seed: int, storage: str | None = None) -> CompileResult:
    return compile(Sentiment(), trainset=TASK.load("train", limit=40), valset=TASK.load("val", limit=12),
                   metric=metric, models=pool, budget=Budget(calls=300),
                   search=SearchSettings(sampler="random", objectives=("quality",), minibatch=6,
                                         promote_fraction=0.5, seed=seed, final_top=0),
                   space=SpaceSettings(formats=("json",), proposer=None, teacher=None, strategies=("direct",),
                                       label_words=(), demo_draws=1),
                   storage=storage, study_name="faults", show_progress=False)


def test_compiles_under_injected_faults_finish_with_valid_results(tmp_path, record_counts):
    injected, compiles = 0, 0
    for seed in range(COMPILES):
        runtime.configure(tempfile.mkdtemp(dir=tmp_path))  # nothing cached from the last compile
        plan = FaultPlan(rate=0.3, seed=seed, hang_s=1.0)
        storage = f"sqlite:///{tmp_path / f'{seed}.db'}"
        result = CompileResult.model_validate_json(_compile(_replay_pool(plan), seed, storage).model_dump_json())
        assert result.chosen in {t.variant_key for t in result.trials} and result.spent["calls"] <= 300
        study = optuna.load_study(study_name="faults", storage=storage)
        assert not study.get_trials(states=(TrialState.RUNNING,))
        failures = sum(t.summary.failure_rate * t.examples for t in result.trials)
        assert plan.injected.total() > 0 and failures >= 0
        injected += plan.injected.total()
        compiles += 1
    record_counts(kind="faults", where="replayed compiles", compiles=compiles, valid_results=compiles,
                  injected=injected)


def test_a_variant_whose_calls_keep_failing_is_failed_and_never_chosen(tmp_path):
    runtime.configure(tempfile.mkdtemp(dir=tmp_path))
    result = _compile(_replay_pool(FaultPlan(0.0, 0), fail_model="local/gemma3-270m"), seed=1)
    broken = [t for t in result.trials if t.variant.steps["classify"].model == "local/gemma3-270m"]
    assert broken and all(t.summary.call_failure_rate == 1.0 and t.summary.score == 0.0 for t in broken)
    chosen = next(t for t in result.trials if t.variant_key == result.chosen)
    assert chosen.variant.steps["classify"].model == "local/smollm2-135m"


class _Scripted:
    """An engine answering from a script of exceptions and texts, counting its calls."""

    supports_response_schema = True
    supported_params = frozenset({"temperature", "max_tokens", "response_format"})

    def __init__(self, script: list):
        self.script, self.calls = list(script), 0

    def complete(self, request: Request) -> Response:
        self.calls += 1
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return Response(id=None, model=request.model, message=Message.assistant(step), finish_reason="stop",
                        usage=Usage(input_tokens=1, output_tokens=1))


class _ResilientScripted(Resilient, _Scripted):
    policy = FAST.model_copy(update={"attempts": 5})


class _Status(RuntimeError):
    def __init__(self, status: int):
        super().__init__(f"HTTP {status}")
        self.status_code = status


def _request() -> Request:
    return Request(model="m", messages=(Message.user("hi"),))


def test_429_with_retry_after_5xx_and_empty_output_are_retried_and_auth_errors_stop():
    engine = _ResilientScripted([RateLimited("429", retry_after=0.01), _Status(503), "", TimeoutError(), "ok"])
    assert engine.complete(_request()).message.text == "ok" and engine.calls == 5
    engine = _ResilientScripted([_Status(401)])
    with pytest.raises(ModelUnavailable):
        engine.complete(_request())
    engine = _ResilientScripted([ValueError("bad request")] * 2)
    with pytest.raises(ValueError):
        engine.complete(_request())
    assert engine.calls == 1  # not transient: not retried


def test_the_real_local_model_under_faults_counts_failed_examples(record_counts):
    runtime.configure(tempfile.mkdtemp())
    plan = FaultPlan(rate=0.4, seed=3, hang_s=1.0)
    pool = ModelPool([ModelPool.default()["local/smollm2-135m"]],
                     engine_for=faulty(LlamaEngine, plan, RetryPolicy(attempts=2, timeout_s=0.5, base_s=0.01)))
    with metered(EngineMeter(max_calls=60)):
        ev = evaluate(Sentiment(), TASK.load("test", limit=12), metric, lm=pool.lm("local/smollm2-135m"),
                      show_progress=False)
    summary = ev.summary()
    failed = [r for r in ev.results if r.error is not None]
    assert summary.failure_rate == len(failed) / 12 and all(r.score == 0.0 for r in failed)
    assert plan.injected.total() > 0
    record_counts(kind="faults", where="local SmolLM2", injected=plan.injected.total(), examples=12,
                  failed_examples=len(failed))


def test_the_loopback_server_under_faults_finishes_and_counts_failures(llama_server, monkeypatch, record_counts):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-secret")
    runtime.configure(tempfile.mkdtemp())
    plan = FaultPlan(rate=0.4, seed=5, hang_s=1.0)
    spec = ModelPool.from_names(["openai/smollm2"], api_base=llama_server, schema_style="json_object")["openai/smollm2"]
    pool = ModelPool([spec], engine_for=faulty(ApiEngine, plan, RetryPolicy(attempts=3, timeout_s=30, base_s=0.01)))
    with metered(EngineMeter(max_calls=60)):
        ev = evaluate(Sentiment(), TASK.load("test", limit=10), metric, lm=pool.lm("openai/smollm2"),
                      show_progress=False)
    assert len(ev.results) == 10 and plan.injected.total() > 0
    assert ev.summary().failure_rate == sum(r.error is not None for r in ev.results) / 10
    record_counts(kind="faults", where="loopback llama.cpp server", injected=plan.injected.total(), examples=10)


class _Refusing(http.server.BaseHTTPRequestHandler):
    """An OpenAI-style endpoint that refuses every request: 401 (bad key) or 404 (unknown model)."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("content-length", 0)))
        status = 401 if "key" in self.path else 404
        body = json.dumps({"error": {"message": "refused", "type": "invalid_request_error"}}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.mark.parametrize("path", ["key/v1", "model/v1"])
def test_a_rejected_key_or_unknown_model_stops_after_one_call_instead_of_burning_the_budget(monkeypatch, path):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-secret")
    runtime.configure(tempfile.mkdtemp())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        pool = ModelPool.from_names(["openai/missing"], api_base=f"http://127.0.0.1:{server.server_port}/{path}")
        with metered(EngineMeter()) as meter, pytest.raises(ModelUnavailable):
            evaluate(Sentiment(), TASK.load("test", limit=10), metric, lm=pool.lm("openai/missing"),
                     show_progress=False)
        assert meter.calls == 1
    finally:
        server.shutdown()
