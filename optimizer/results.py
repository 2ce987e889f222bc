"""Results of a compile: the Pareto front, the chosen variant, a report table and a front plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from optimizer.records import CompileResult, TrialRecord
from optimizer.report import evaluation_table, print_table
from optimizer.secrets import SecretDetector
from optimizer.space.variant import StepConfig
from optimizer.summary import Summary

# objective -> (Summary field, sign): sign +1 maximise, -1 minimise
OBJECTIVES = {"quality": ("score", 1.0), "cost": ("cost_per_example", -1.0), "latency": ("latency_p50_s", -1.0)}


def _vector(record: TrialRecord, objectives: Sequence[str]) -> tuple[float, ...]:
    return tuple(OBJECTIVES[o][1] * getattr(record.summary, OBJECTIVES[o][0]) for o in objectives)


def pareto_front(records: Sequence[TrialRecord], objectives: Sequence[str] = ("quality", "cost")) -> list[TrialRecord]:
    """Non-dominated records (one per variant), sorted by quality, best first."""
    unique = {r.variant_key: r for r in records}
    vectors = {k: _vector(r, objectives) for k, r in unique.items()}

    def dominated(k: str) -> bool:
        v = vectors[k]
        return any(all(a >= b for a, b in zip(w, v, strict=True)) and w != v for w in vectors.values())

    front = [r for k, r in unique.items() if not dominated(k)]
    return sorted(front, key=lambda r: (-r.summary.score, r.summary.cost_per_example))


MAX_CALL_FAILURE_RATE = 0.5  # a variant whose calls raise on more of its examples is failed


def feasible(record: TrialRecord, max_cost: float | None, max_p95: float | None) -> bool:
    """Within the caps, and not a failed variant (its calls raised, after retries, on more than
    ``MAX_CALL_FAILURE_RATE`` of its examples): a failed variant is never promoted, nor chosen while any
    other fits."""
    s = record.summary
    return (max_cost is None or s.cost_per_example <= max_cost) and (
        max_p95 is None or s.latency_p95_s <= max_p95) and s.call_failure_rate <= MAX_CALL_FAILURE_RATE


def choose(records: Sequence[TrialRecord], *, max_cost: float | None = None,
           max_p95: float | None = None) -> TrialRecord:
    """Highest quality within the caps (ties: cheaper, then by variant key, so the choice does not depend
    on the order the variants were found in); the cheapest if none fits."""
    ok = [r for r in records if feasible(r, max_cost, max_p95)]
    if not ok:
        return min(records, key=lambda r: (r.summary.cost_per_example, r.variant_key))
    return min(ok, key=lambda r: (-r.summary.score, r.summary.cost_per_example, r.variant_key))


def _demos(config: StepConfig) -> str:
    """``4 demos``, or ``4 retrieved demos`` (per input) for a step with retrieval."""
    return f"{config.retrieval.k} retrieved demos" if config.retrieval else f"{len(config.demos)} demos"


def _step(cfg: StepConfig) -> str:
    """One step config in words: model, format, strategy, demos, label words, instruction."""
    if cfg.strategy == "ensemble":
        return f"an ensemble of {len(cfg.members)} label-scoring configs (their calibrated label scores averaged)"
    words = "; label words " + ", ".join(f"{label} -> {word}" for field in cfg.verbalizer.values()
                                         for label, word in field.items()) if cfg.verbalizer else ""
    return (f"model `{cfg.model}`, format `{cfg.format}`, strategy `{cfg.strategy}`"
            f"{f' x{cfg.samples}' if cfg.strategy == 'sc' else ''}"
            f"{f' (calibration {cfg.calibration})' if cfg.calibration != 'none' else ''}, {_demos(cfg)}{words}; "
            f"instruction: {cfg.instruction!r}")


def describe(record: TrialRecord) -> str:
    """A short label: the record's own label, or each step's model/format/strategy/demos."""
    final = f" (final: {record.examples} ex)" if record.stage == "final" else ""
    if record.label:
        return record.label + final
    parts = [f"{name}={c.model.split('/')[-1]},{c.format},{c.strategy}{c.samples if c.strategy == 'sc' else ''}"
             f"{'-' + c.calibration if c.calibration != 'none' else ''},{_demos(c).replace(' ', '')}"
             f"{',spans' if c.spans else ''}"
             f"{',words:' + record.variant.steps[name].verbalizer if c.verbalizer else ''}"
             for name, c in record.steps.items()]
    return f"{record.variant_key} " + " ".join(parts) + final


def shown_keys(result: CompileResult) -> list[str]:
    """The variants a report lists: the front, then the chosen one if it is not on it (with a final
    selection the choice is among the re-scored variants, which a variant scored on validation alone may
    dominate)."""
    return [*result.front, *([] if result.chosen in result.front else [result.chosen])]


def print_report(result: CompileResult) -> None:
    """Validation front and baselines, then the test split (when evaluated)."""
    full = result.best_records()
    front = {describe(full[k]) + (" *" if k == result.chosen else ""): full[k].summary for k in shown_keys(result)}
    base = {describe(b): b.summary for b in result.baselines if b.variant_key not in result.front}
    print_table(evaluation_table("validation: Pareto front (* chosen) and baselines", {**front, **base}))
    for line in (result.space_note, result.choice_note):
        if line:
            print(line)
    if result.test:
        print_table(evaluation_table("test split", {describe(t) + (" *" if t.variant_key == result.chosen else ""):
                                                    t.summary for t in result.test}))


def plot_front(result: CompileResult, path: str | Path) -> Path:
    """Quality vs cost per example: every fully evaluated variant, the front, baselines, the chosen one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = list(result.best_full().values())
    front = [r for r in full if r.variant_key in set(result.front)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([r.summary.cost_per_example for r in full], [r.summary.score for r in full],
               c="lightgray", label="evaluated variants")
    front.sort(key=lambda r: r.summary.cost_per_example)
    ax.plot([r.summary.cost_per_example for r in front], [r.summary.score for r in front], "o-",
            c="tab:blue", label="Pareto front")
    for b in result.baselines:
        ax.scatter(b.summary.cost_per_example, b.summary.score, marker="s", c="tab:red")
        ax.annotate(b.label or "baseline", (b.summary.cost_per_example, b.summary.score), fontsize=7)
    chosen = result.best_full().get(result.chosen)
    if chosen is not None:
        ax.scatter(chosen.summary.cost_per_example, chosen.summary.score, marker="*", s=250, c="gold",
                   edgecolors="k", label="chosen", zorder=5)
    ax.set_xlabel("cost per example (US$)")
    ax.set_ylabel("validation score")
    ax.set_title(f"{result.program}: quality vs cost")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def _row(label: str, s: Summary) -> str:
    low, high = s.score_ci
    return (f"| {label} | {s.score:.3f} | [{low:.3f}, {high:.3f}] | {s.validity_rate:.1%} | "
            f"{s.cost_per_example:.2e} | {s.latency_p50_s:.3f} | {s.latency_p95_s:.3f} | {s.lm_calls} |")


def markdown_report(result: CompileResult) -> str:
    """The compile as Markdown: spending, the validation front with baselines, and the test split; secrets
    (a key pasted into the data reaches the instructions and demos) are masked."""
    header = ("| variant | score | 95% CI | valid | cost/ex (US$) | p50 s | p95 s | LM calls |\n"
              "| --- | --- | --- | --- | --- | --- | --- | --- |")
    full = result.best_records()
    lines = [f"# Compile of `{result.program}`", "",
             f"seed {result.seed}; budget {result.budget}; spent {result.spent}; "
             f"{len(result.trials)} evaluations; search space size {result.space.size()}", "",
             "## Validation: Pareto front (quality vs cost; * chosen) and baselines", "",
             f"Chosen as the best of {len(result.trials)} evaluations on these examples, so its score is "
             "optimistic for unseen examples; only examples the choice never saw (a test split) measure it.",
             "", header]
    lines += [_row(describe(full[k]) + (" *" if k == result.chosen else ""), full[k].summary)
              for k in shown_keys(result)]
    lines += [_row(describe(b), b.summary) for b in result.baselines if b.variant_key not in result.front]
    if result.test:
        lines += ["", "## Test split (never seen during the search)", "", header]
        lines += [_row(describe(t) + (" *" if t.variant_key == result.chosen else ""), t.summary) for t in result.test]
    chosen = result.chosen_steps()
    lines += ["", "## Chosen variant", ""]
    lines += [f"{line}.\n" for line in (result.space_note, result.choice_note) if line]
    for name, cfg in chosen.items():
        lines.append(f"- `{name}`: {_step(cfg)}")
        lines += [f"  - member {i + 1}: {_step(m)}" for i, m in enumerate(cfg.members)]
    return SecretDetector().mask("\n".join(lines) + "\n")
