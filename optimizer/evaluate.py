"""Run a program on examples: per-example records and aggregates (score with a 95% bootstrap CI,
cost per example, latency p50/p95, validity rate, LM calls, tokens).

>>> ev = evaluate(Sentiment(), examples, metric, lm=pool.lm("local/smollm2-135m"))
>>> ev.summary().score, ev.summary().score_ci
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import dspy
import numpy as np

from optimizer.accounting import STOPPING, CallRecord, Ledger, raise_stopping, totals
from optimizer.errors import CallFailed, InvalidOutput, TruncatedOutput
from optimizer.progress import progress_bar
from optimizer.statistics import aggregate_name, aggregate_of, bootstrap_ci, mean_of_first, score_ci
from optimizer.summary import Summary

__all__ = ["Evaluation", "ExampleResult", "bootstrap_ci", "evaluate", "prefix_order", "report_confidence",
           "run_example"]
# The confidences the scoring steps of the running example reported (one list per run_example call).
_confidences: ContextVar[list[float] | None] = ContextVar("progopt_confidences", default=None)


def report_confidence(value: float) -> None:
    """Called by a label-scoring step for each prediction: its calibrated label probability."""
    sink = _confidences.get()
    if sink is not None:
        sink.append(value)


@dataclass
class ExampleResult:
    """One example's outcome; ``error`` holds a typed failure (truncation, invalid output) as text."""

    index: int
    score: float
    valid: bool
    prediction: dict[str, Any] | None
    calls: list[CallRecord]
    error: str | None = None
    error_type: str | None = None
    confidence: float | None = None  # label scoring: mean calibrated probability of the chosen labels
    row: list[float] | None = None  # the metric's statistics (a corpus metric's); None: [score]

    @property
    def latency_s(self) -> float:
        return sum(c.latency_s for c in self.calls)

    @property
    def cost(self) -> float:
        return sum(c.cost for c in self.calls)


@dataclass
class Evaluation:
    """Per-example results plus the aggregates the optimizer and reports use; ``aggregate`` combines the
    examples' rows into the score (the mean for a plain metric, micro F1 for ``entity_f1``)."""

    results: list[ExampleResult]
    calls: list[CallRecord] = field(default_factory=list)
    aggregate: Callable[[np.ndarray], float] = mean_of_first
    aggregate_name: str = "mean"

    def __post_init__(self) -> None:
        self.calls = [c for r in self.results for c in r.calls]

    @property
    def rows(self) -> list[list[float]]:
        return [r.row if r.row is not None else [r.score] for r in self.results]

    @property
    def score(self) -> float:
        return float(self.aggregate(np.asarray(self.rows, dtype=float))) if self.results else 0.0

    def summary(self) -> Summary:
        n = max(len(self.results), 1)
        latencies = [r.latency_s for r in self.results] or [0.0]
        low, high = score_ci(self.rows, self.aggregate)
        confidences = [r.confidence for r in self.results if r.confidence is not None]
        return Summary(
            examples=len(self.results), score=self.score, score_ci=[low, high],
            validity_rate=sum(r.valid for r in self.results) / n,
            cost_per_example=sum(r.cost for r in self.results) / n,
            latency_p50_s=float(np.percentile(latencies, 50)),
            latency_p95_s=float(np.percentile(latencies, 95)),
            lm_calls=len(self.calls), cached_calls=sum(c.cached for c in self.calls),
            input_tokens=sum(c.input_tokens for c in self.calls),
            output_tokens=sum(c.output_tokens for c in self.calls),
            truncations=sum(r.error_type == "TruncatedOutput" for r in self.results),
            failure_rate=sum(r.error is not None for r in self.results) / n,
            call_failure_rate=sum(r.error_type == "CallFailed" for r in self.results) / n,
            by_model=totals(self.calls, "model"), by_step=totals(self.calls, "step"),
            mean_confidence=float(np.mean(confidences)) if confidences else None,
            rows=self.rows if self.aggregate is not mean_of_first else [],
            scores=[r.score for r in self.results], aggregate=self.aggregate_name,
        )


def _prediction_dict(pred: Any) -> dict[str, Any]:
    items = pred.items() if hasattr(pred, "items") else vars(pred).items()
    return json.loads(json.dumps(dict(items), default=lambda o: o.model_dump() if hasattr(o, "model_dump")
                                 else str(o)))


def _failure(exc: Exception, calls: list[CallRecord]) -> Exception:
    """Name a failure by its evidence: a truncated generation, a call that raised, or an output that did
    not parse."""
    bad = next((c for c in reversed(calls) if c.finish_reason == "length"), None)
    if bad is not None:
        return TruncatedOutput(bad.model, bad.step, bad.text)
    raised = next((c for c in reversed(calls) if c.error is not None and c.text is None), None)
    if raised is not None:
        return CallFailed(raised.model, raised.step, raised.error or "")
    last = calls[-1] if calls else None
    return InvalidOutput(last and last.model, last and last.step, last and last.text, f"{type(exc).__name__}: {exc}")


def run_example(program: dspy.Module, example: dspy.Example, metric: Callable, index: int,
                steps: dict[int, str]) -> ExampleResult:
    """Run one example; model-side failures become a recorded invalid result (score 0), except the
    :data:`~optimizer.accounting.STOPPING` ones (budget spent, model unavailable), which are raised."""
    ledger = Ledger(steps=steps)
    confidences: list[float] = []
    token = _confidences.set(confidences)
    try:
        with dspy.context(callbacks=[*dspy.settings.callbacks, ledger]):
            try:
                pred = program(**example.inputs())
            except STOPPING:
                raise
            except Exception as exc:  # noqa: BLE001 - every model-side failure is a recorded result
                raise_stopping(exc)
                failure = _failure(exc, ledger.records)
                return ExampleResult(index, 0.0, False, None, ledger.records, str(failure), type(failure).__name__,
                                     row=_row(metric, example, dspy.Prediction()))
    finally:
        _confidences.reset(token)
    valid = all(c.valid is not False for c in ledger.records)
    return ExampleResult(index, float(metric(example, pred)), valid, _prediction_dict(pred), ledger.records,
                         confidence=float(np.mean(confidences)) if confidences else None,
                         row=_row(metric, example, pred))


def _row(metric: Callable, example: dspy.Example, prediction: Any) -> list[float] | None:
    """A corpus metric's statistics for the example (a failed example has an empty prediction: for entity
    F1 its gold entities are all missed); None for a plain metric."""
    statistics = getattr(metric, "statistics", None)
    return None if statistics is None else [float(v) for v in statistics(example, prediction)]


def prefix_order(examples: Sequence[dspy.Example]) -> list[int]:
    """Indices sorted by input text so consecutive calls share the longest possible prompt prefix."""
    def key(i: int) -> str:
        return json.dumps(dict(examples[i].inputs().items()), sort_keys=True, default=str)

    return sorted(range(len(examples)), key=key)


def evaluate(program: dspy.Module, examples: Sequence[dspy.Example], metric: Callable, *,
             lm: dspy.LM | None = None, adapter: dspy.Adapter | None = None, threads: int = 1,
             description: str = "evaluating", show_progress: bool = True) -> Evaluation:
    """Evaluate ``program`` on ``examples``; ``lm``/``adapter`` are defaults for steps without their own.

    Calls are ordered to reuse the model's KV prefix; results come back in the input order. ``threads`` > 1
    runs examples concurrently: for API models only (a local llama.cpp instance serves one call at a time)."""
    steps = {id(p): name for name, p in program.named_predictors()}
    results: list[ExampleResult | None] = [None] * len(examples)
    overrides: dict[str, Any] = {"adapter": adapter or dspy.JSONAdapter()}
    if lm is not None:
        overrides["lm"] = lm
    with dspy.context(**overrides), progress_bar(description, len(examples), show_progress) as advance:
        if threads <= 1:
            for i in prefix_order(examples):
                results[i] = run_example(program, examples[i], metric, i, steps)
                advance()
        else:
            with ThreadPoolExecutor(threads, thread_name_prefix="progopt-eval") as pool:
                futures = {pool.submit(contextvars.copy_context().run, run_example, program, examples[i], metric, i,
                                       steps): i for i in prefix_order(examples)}
                try:
                    for future in as_completed(futures):
                        results[futures[future]] = future.result()
                        advance()
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    return Evaluation([r for r in results if r is not None], aggregate=aggregate_of(metric),
                      aggregate_name=aggregate_name(metric))
