"""Trial records and compile results as MLflow values: metric dicts, the variant JSON, the front table.

Pure functions over :mod:`optimizer.records`; the tracker decides where they go."""

from __future__ import annotations

import csv
import io
from typing import Any

from optimizer.models.pool import ModelPool
from optimizer.models.spec import EMBEDDED_SPECS
from optimizer.records import CompileResult, TrialRecord
from optimizer.results import describe

# Summary fields logged as metrics under their own names (quality is logged per stage).
SUMMARY_METRICS = ("cost_per_example", "latency_p50_s", "latency_p95_s", "validity_rate", "lm_calls",
                   "cached_calls", "input_tokens", "output_tokens", "truncations", "examples", "mean_confidence")
PARENT_METRICS = ("cost_per_example", "latency_p50_s", "latency_p95_s", "validity_rate")


def metrics(record: TrialRecord) -> dict[str, float]:
    """``quality_<stage>`` with its CI bounds, cost, latency, tokens, validity, LM and cached calls."""
    s = record.summary
    out = {f"quality_{record.stage}": s.score}
    if s.score_ci:
        out[f"quality_{record.stage}_ci_low"], out[f"quality_{record.stage}_ci_high"] = s.score_ci
    out.update({k: getattr(s, k) for k in SUMMARY_METRICS})
    out["tokens"] = s.input_tokens + s.output_tokens
    return {k: float(v) for k, v in out.items() if v is not None}  # mean_confidence: label scoring only


def variant_doc(record: TrialRecord) -> dict[str, Any]:
    """The variant as JSON: its key, its choice per step (by candidate id) and the resolved step configs."""
    return {"variant_key": record.variant_key, "choice": record.variant.model_dump(mode="json")["steps"],
            "steps": {name: config.model_dump(mode="json") for name, config in record.steps.items()}}


def _validation(result: CompileResult) -> dict[str, TrialRecord]:
    """The record each variant was judged on: its full-validation one, else its latest minibatch one."""
    latest = {t.variant_key: t for t in result.trials}
    return {**latest, **result.best_full()}


def parent_metrics(result: CompileResult) -> dict[str, float]:
    """Spent budget, counts, and the validation (and test) metrics of the baselines and the chosen variant."""
    out: dict[str, float] = {f"spent_{k}": v for k, v in result.spent.items()}
    records = _validation(result)
    out.update(variants_evaluated=len(records), trials=len(result.trials), front_size=len(result.front))
    named = [(b.label.replace(" ", ".") if b.label else f"baseline.{b.variant_key}", b) for b in result.baselines]
    chosen = records.get(result.chosen)
    named += [("chosen", chosen)] if chosen else []
    for prefix, record in named:
        out[f"{prefix}.quality_{record.stage}"] = record.summary.score
        out.update({f"{prefix}.{k}": getattr(record.summary, k) for k in PARENT_METRICS})
    for t in result.test:
        if t.variant_key == result.chosen:
            out["chosen.quality_test"] = t.summary.score
    return {k: float(v) for k, v in out.items()}


def front_rows(result: CompileResult) -> list[dict[str, Any]]:
    """One row per front, baseline or chosen variant: flags, validation and test metrics, and its params."""
    records = _validation(result)
    baselines = {b.variant_key for b in result.baselines}
    test = {t.variant_key: t for t in result.test}
    rows = []
    for key in dict.fromkeys([*result.front, *baselines, result.chosen]):
        r = records[key]
        s = r.summary
        low, high = s.score_ci or (None, None)
        row = {"variant_key": key, "description": describe(r), "on_front": key in result.front,
               "chosen": key == result.chosen, "baseline": key in baselines, "stage": r.stage,
               "quality": s.score, "quality_ci_low": low, "quality_ci_high": high,
               **{k: getattr(s, k) for k in PARENT_METRICS},
               "quality_test": test[key].summary.score if key in test else None, **r.variant.params()}
        rows.append(row)
    return rows


def csv_text(rows: list[dict[str, Any]]) -> str:
    """Rows as CSV, columns in first-seen order."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def registered_pool(result: CompileResult) -> ModelPool:
    """The specs of the chosen steps' models, as the compile's pool had them (``result.models``)."""
    specs = {**EMBEDDED_SPECS, **result.models}
    return ModelPool(specs[m] for m in dict.fromkeys(c.model for c in result.chosen_steps().values()))
