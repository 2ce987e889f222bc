"""Candidate pools per step, built once per compile: instructions and demo sets.

Instructions: the original; deterministic rewrites from the signature (field descriptions, the label set
spelled out); and proposals from a proposer LM, grounded in a data summary, filtered for the failure modes
tiny proposers show (empty, degenerate, template-copying, label-leaking). Demo sets: zero-shot,
label-balanced labeled sets, and bootstrapped sets (traces of a teacher that pass the metric)."""

from __future__ import annotations

import random
import re
import typing
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import dspy

from optimizer.accounting import STOPPING, raise_stopping
from optimizer.models.engine import REGEX_METADATA_KEY
from optimizer.space.build import build_program
from optimizer.space.variant import StepConfig

# Unbounded on purpose: bounded repeats ({20,180}) multiply the automaton's states and made building the
# Outlines index take minutes and gigabytes; max_tokens bounds the length instead.
PROPOSAL_PATTERN = r"[A-Z][a-z]+ [a-z][^\n{}<>\[\]]*\."
MIN_DISTINCT_WORD_RATIO = 0.6
DRAW_RETRIES = 4
MAX_COVERING_SIZE = 8  # most labels a one-demo-per-label set is added for (see covering_sizes)


def _labels(field: Any) -> list[str] | None:
    annotation = field.annotation
    if typing.get_origin(annotation) is typing.Literal:
        return [str(a) for a in typing.get_args(annotation)]
    return None


def rewrites(signature: type[dspy.Signature]) -> dict[str, str]:
    """Deterministic instruction variants derived from the signature alone."""
    original = signature.instructions.strip()
    out = {"original": original}
    parts = []
    for name, field in signature.output_fields.items():
        labels = _labels(field)
        if labels:
            parts.append(f"Answer `{name}` with exactly one of: {', '.join(labels)}.")
    if parts:
        out["labels"] = f"{original} {' '.join(parts)}"
    described = [f"`{n}` ({f.json_schema_extra.get('desc')})" for n, f in signature.input_fields.items()
                 if f.json_schema_extra and f.json_schema_extra.get("desc") and
                 not str(f.json_schema_extra.get("desc")).startswith("${")]
    outputs = ", ".join(f"`{n}`" for n in signature.output_fields)
    if described:
        out["fields"] = f"Given {', '.join(described)}, give {outputs}. {original}"
    return out


def is_usable(text: str, *, original: str, train_texts: Sequence[str], labels: Sequence[str] = ()) -> bool:
    """Reject empty, degenerate, template-copying and label-leaking instruction proposals.

    Template-copying: the proposal talks about instructions (it echoes the proposal prompt) or repeats the
    original. Label-leaking: it copies a training input, or names some but not all of an output's labels
    (which biases the model towards those labels)."""
    words = re.findall(r"[a-z']+", text.lower())
    if len(words) < 5 or len(set(words)) / len(words) < MIN_DISTINCT_WORD_RATIO:
        return False
    if "instruction" in text.lower() or text.strip() == original.strip():
        return False
    named = [label for label in labels if re.search(rf"(?<![\w:]){re.escape(label)}(?![\w:])", text, re.IGNORECASE)]
    if named and len(named) < len(labels):
        return False
    lowered = text.lower()
    return not any(len(t) >= 20 and t.lower()[:40] in lowered for t in train_texts)


def _proposal_prompt(signature: type[dspy.Signature], examples: Sequence[dspy.Example]) -> str:
    lines = [f"Task: {signature.instructions.strip()}", "Examples:"]
    for ex in examples:
        fields = [f"{k}: {str(ex.get(k))[:120]}" for k in (*signature.input_fields, *signature.output_fields)
                  if ex.get(k) is not None]
        lines.append("- " + " | ".join(fields))
    lines.append("Write one short, clear instruction for this task.")
    lines.append("Instruction:")
    return "\n".join(lines) + " "


def propose(signature: type[dspy.Signature], trainset: Sequence[dspy.Example], lm: dspy.LM, *,
            n: int, seed: int) -> list[str]:
    """Up to ``n`` usable proposals from ``lm``, each a seeded sample constrained to one line ending in a
    full stop; one cut off by max_tokens (no final full stop) is discarded."""
    rng = random.Random(seed)
    train_texts = [str(ex.get(k)) for ex in trainset for k in signature.input_fields if ex.get(k)]
    labels = [label for field in signature.output_fields.values() for label in _labels(field) or ()]
    found: list[str] = []
    for i in range(n):
        shown = rng.sample(list(trainset), min(4, len(trainset)))
        try:
            text = lm(_proposal_prompt(signature, shown), temperature=0.9, seed=seed + i, rollout_id=seed + i,
                      max_tokens=64, metadata={REGEX_METADATA_KEY: PROPOSAL_PATTERN})[0]
        except STOPPING:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed proposal is simply not a candidate
            raise_stopping(exc)
            continue
        text = text.strip()
        usable = text.endswith(".") and is_usable(text, original=signature.instructions, train_texts=train_texts,
                                                  labels=labels)
        if usable and text not in found:
            found.append(text)
    return found


def covering_sizes(sizes: Sequence[int], labels: int, cap: int = MAX_COVERING_SIZE) -> list[int]:
    """``sizes``, plus ``labels`` (one demo per label, label-balanced) when no size can show every label and
    there are at most ``cap`` labels: 2 and 4 demos cannot show TREC's 6 classes; 50 fine classes stay unshown."""
    if labels > max(sizes, default=0) and labels <= cap:
        return [*sizes, labels]
    return list(sizes)


def labeled_sets(step_fields: Sequence[str], label_field: str | None, trainset: Sequence[dspy.Example],
                 sizes: Sequence[int], seed: int, shuffle_labels: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Label-balanced demo sets (round-robin over labels, in sorted order unless ``shuffle_labels``: then a
    seeded order, so sets smaller than the label count cover other labels) of each size, from examples with
    all fields."""
    usable = [ex for ex in trainset if all(ex.get(f) is not None for f in step_fields)]
    if not usable:
        return {}
    rng = random.Random(seed)
    by_label: dict[str, list[dspy.Example]] = defaultdict(list)
    for ex in rng.sample(usable, len(usable)):
        by_label[str(ex.get(label_field)) if label_field else ""].append(ex)
    order = sorted(by_label)
    if shuffle_labels:
        rng.shuffle(order)
    out = {}
    for k in sizes:
        chosen: list[dspy.Example] = []
        i = 0
        while len(chosen) < min(k, len(usable)):
            bucket = by_label[order[i % len(order)]]
            if i // len(order) < len(bucket):
                chosen.append(bucket[i // len(order)])
            i += 1
        out[f"labeled{k}"] = [{f: ex.get(f) for f in step_fields} for ex in chosen]
    return out


def labeled_draws(step_fields: Sequence[str], label_field: str | None, trainset: Sequence[dspy.Example],
                  sizes: Sequence[int], seed: int, draws: int) -> dict[str, list[dict[str, Any]]]:
    """``draws`` distinct label-balanced sets per size: draw 0 is :func:`labeled_sets` with ``seed``
    (ids ``labeled{k}``, as before draws existed); draw ``j`` >= 1 (id ``labeled{k}.{j}``) is drawn with the
    seed derived from ``"{seed}.{j}"``, its label order and its demos shuffled, so sets differ in members, in
    which labels a set smaller than the label count shows, and in order. A draw equal to an earlier set of its
    size is redrawn up to ``DRAW_RETRIES`` times, then left out (a small pool may yield fewer sets)."""
    out = labeled_sets(step_fields, label_field, trainset, sizes, seed)
    for k in sizes:
        seen = [out[f"labeled{k}"]] if f"labeled{k}" in out else []
        for j in range(1, draws if seen else 0):
            for retry in range(DRAW_RETRIES):
                rng = random.Random(f"{seed}.{j}.{retry}")
                demos = labeled_sets(step_fields, label_field, trainset, [k], rng.randrange(2**32),
                                     shuffle_labels=True)[f"labeled{k}"]
                rng.shuffle(demos)
                if demos not in seen:
                    seen.append(demos)
                    out[f"labeled{k}.{j}"] = demos
                    break
    return out


def bootstrapped_sets(program: dspy.Module, trainset: Sequence[dspy.Example], metric: Callable,
                      baseline: dict[str, StepConfig], lm_for: Callable[[str], dspy.LM], *,
                      sizes: Sequence[int], max_examples: int, seed: int,
                      label_fields: dict[str, str | None]) -> dict[str, list[list[dict[str, Any]]]]:
    """Per step, demo sets from traces of ``baseline`` (the teacher) on train examples that pass the metric.

    Returns ``{step: [set_for_size...]}`` ordered like ``sizes``; sets are label-balanced where the step's
    first output is a label, so a teacher that favours one class does not teach only that class."""
    runnable = build_program(program, baseline, lm_for)
    names = {id(p): n for n, p in runnable.named_predictors()}
    rng = random.Random(seed)
    traces: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ex in rng.sample(list(trainset), min(max_examples, len(trainset))):
        with dspy.context(trace=[]):
            try:
                pred = runnable(**ex.inputs())
            except STOPPING:
                raise
            except Exception as exc:  # noqa: BLE001 - a failed teacher run gives no demo
                raise_stopping(exc)
                continue
            if metric(ex, pred) < 1.0:
                continue
            for predictor, inputs, output in dspy.settings.trace:
                step = names.get(id(predictor))
                if step is not None:
                    traces[step].append({**inputs, **{k: v for k, v in output.items() if k != "reasoning"}})
    out: dict[str, list[list[dict[str, Any]]]] = {}
    for step, demos in traces.items():
        examples = [dspy.Example(**d) for d in demos]
        fields = list(demos[0])
        sets = labeled_sets(fields, label_fields.get(step), examples, sizes, seed)
        out[step] = [sets[f"labeled{k}"] for k in sizes if f"labeled{k}" in sets]
    return out


def label_count(signature: type[dspy.Signature], field: str | None) -> int:
    """How many labels the Literal output ``field`` has (0 for None or a field that is not a label)."""
    return len(_labels(signature.output_fields[field]) or ()) if field else 0


def first_label_field(signature: type[dspy.Signature]) -> str | None:
    """The first output field whose type is a Literal (used to balance demo sets), if any."""
    return next((n for n, f in signature.output_fields.items() if _labels(f)), None)
