"""Search efficiency on a space small enough to enumerate (issue #17): how many evaluations and LM calls each
search needs before the variant it would choose scores at least 95% of the exhaustive optimum.

The case: SST-2, one step; every instruction x demo set x model x format that ``compile`` builds without
proposals or bootstrapping (3 x 3 x 2 x 2 = 36 variants), each evaluated on the same 80 validation examples.

    .venv/bin/python experiments/bench_search_efficiency.py record     # real models, ~15 min on 1 core; resumable
    .venv/bin/python experiments/bench_search_efficiency.py simulate   # no model: replays the recording
    .venv/bin/python experiments/bench_search_efficiency.py simulate --seeds 10 --strategies tpe \
        --validation 80 30 --no-mipro --out experiments/results/search-efficiency-2026-12-07   # issue #37

``record`` runs every variant on every validation example through a ``RecordingEngine`` and keeps, per variant,
its per-example scores (``table.json``) and every LM output (``recording.json.gz``); a rerun skips the variants
already stored. ``simulate`` then runs, on recorded outputs only:
- progopt's own compile (``tpe``, ``coordinate``, ``random``: minibatch screening on the first 16 validation
  examples, the top third promoted to the whole set) through a ``ReplayEngine``, one compile per seed;
- an Optuna TPE run with MIPROv2's settings (dspy 3.x ``_optimize_prompt_parameters``: the default program fully
  evaluated first, ``TPESampler(multivariate=True)``, random minibatches of 35, every 6th trial a full
  evaluation of the untested combination with the best mean minibatch score), over the same space.
LM calls are distinct (variant, example) pairs evaluated (a response cache serves repeats, as in both tools).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import random
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `programs` is not an installed package: run against this checkout

OUT = ROOT / "experiments" / "results" / "search-efficiency-2026-11-30"
TRAIN, VAL, MINIBATCH, SEEDS, TARGET = 100, 80, 16, 20, 0.95
FORMATS = ("json", "compact")
MIPRO = {"minibatch_size": 35, "full_eval_steps": 5}  # dspy MIPROv2 defaults (auto="light" sets the trials)


def case() -> tuple[Any, list, list, Callable]:
    from programs.sentiment import TASK, Sentiment, metric

    return Sentiment(), TASK.load("train", limit=TRAIN), TASK.load("val", limit=VAL), metric


def space_for(pool: Any) -> Any:
    """The space ``compile`` builds for :func:`case` with no proposer and no teacher (so no LM call)."""
    from optimizer.search.space_builder import build_space

    program, train, _, metric = case()
    return build_space(program, train, metric, models=pool.names, lm_for=pool.lm, seed=0, proposer=None,
                       teacher=None, formats=FORMATS)


def variants(space: Any) -> list[Any]:
    from optimizer.search.samplers import param_choices, variant_from_params

    choices = param_choices(space)
    return [variant_from_params(space, dict(zip(choices, combo, strict=True)))
            for combo in itertools.product(*choices.values())]


def record() -> None:
    """Evaluate every variant on every validation example with real models, resumably (per variant)."""
    from optimizer import runtime
    from optimizer.evaluate import evaluate
    from optimizer.models import ModelPool
    from optimizer.models.engine import LlamaEngine
    from optimizer.models.replay import RecordingEngine
    from optimizer.space.build import build_program

    runtime.configure(tempfile.mkdtemp())  # no response cache across runs: every output reaches the recording
    OUT.mkdir(parents=True, exist_ok=True)
    table_path, rec_path = OUT / "table.json", OUT / "recording.json.gz"
    table = json.loads(table_path.read_text()) if table_path.exists() else {}
    recording = json.loads(gzip.decompress(rec_path.read_bytes())) if rec_path.exists() else {}
    pool = ModelPool(ModelPool.default().specs.values(),
                     engine_for=lambda spec: RecordingEngine(LlamaEngine(spec), recording))
    space = space_for(pool)
    program, _, val, metric = case()
    todo = [v for v in variants(space) if v.key() not in table]
    print(f"{len(table)} variants stored, {len(todo)} to record")
    for i, variant in enumerate(todo, 1):
        ev = evaluate(build_program(program, space.resolve(variant), pool.lm), val, metric, show_progress=False)
        table[variant.key()] = {"params": variant.params(), "scores": [r.score for r in ev.results],
                                "seconds": sum(r.latency_s for r in ev.results)}
        rec_path.write_bytes(gzip.compress(json.dumps(recording, sort_keys=True).encode()))
        table_path.write_text(json.dumps(table, indent=1, sort_keys=True))
        print(f"[{i}/{len(todo)}] {variant.key()} score {ev.score:.3f} {variant.params()}", flush=True)


Point = tuple[int, int, float]  # (evaluations so far, LM calls so far, full score of the variant chosen so far)


def load_table() -> dict[str, dict[str, Any]]:
    return json.loads((OUT / "table.json").read_text())


def full(table: dict[str, dict[str, Any]], key: str) -> float:
    return statistics.fmean(table[key]["scores"])


def progopt_run(strategy: str, seed: int, table: dict[str, dict[str, Any]], validation: int = VAL) -> list[Point]:
    """One replayed ``compile`` (progopt's session, sampler and promotion rule; ``validation`` examples score a
    promoted variant); its trajectory. A variant's point is its score on all ``VAL`` examples (the table)."""
    from optimizer import runtime
    from optimizer.models import ModelPool
    from optimizer.models.replay import ReplayEngine
    from optimizer.search.compile import Budget, SearchSettings, SpaceSettings, compile

    recording = json.loads(gzip.decompress((OUT / "recording.json.gz").read_bytes()))
    pool = ModelPool(ModelPool.default().specs.values(), engine_for=lambda spec: ReplayEngine(spec, recording))
    runtime.configure(tempfile.mkdtemp())  # a fresh response cache per run: repeats within the run are free
    program, train, val, metric = case()
    result = compile(program, trainset=train, valset=val, metric=metric, models=pool,
                     budget=Budget(calls=len(table) * VAL),
                     search=SearchSettings(sampler=strategy, objectives=("quality",), minibatch=MINIBATCH,
                                           promote_fraction=1 / 3, seed=seed, final_top=0, validation=validation),
                     space=SpaceSettings(formats=FORMATS, proposer=None, teacher=None, strategies=("direct",),
                                         demo_draws=1), show_progress=False)
    pairs: set[tuple[str, int]] = set()
    best, points = 0.0, []
    chronological = sorted(result.trials, key=lambda r: (r.number, r.stage == "full"))  # a full after its trial
    for evaluations, rec in enumerate(chronological, 1):
        pairs.update((rec.variant_key, i) for i in range(rec.examples))  # minibatch = the first examples
        if rec.stage == "full":
            best = max(best, full(table, rec.variant_key))
        points.append((evaluations, len(pairs), best))
    return points


def mipro_run(seed: int, table: dict[str, dict[str, Any]], max_trials: int = 300) -> list[Point]:
    """An Optuna TPE search with MIPROv2's settings over the recorded table (see the module docstring)."""
    import optuna

    from optimizer.models import ModelPool
    from optimizer.search.samplers import param_choices, variant_from_params

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = space_for(ModelPool.default())
    choices = param_choices(space)
    rng = random.Random(seed)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True))
    default = variant_from_params(space, {name: options[0] for name, options in choices.items()}).key()
    pairs = {(default, i) for i in range(VAL)}
    fully, minibatch_scores = {default}, {}
    best, evaluations, points = full(table, default), 1, []
    points.append((evaluations, len(pairs), best))
    for trial_num in range(1, max_trials + 1):
        trial = study.ask()
        key = variant_from_params(space, {n: trial.suggest_categorical(n, o) for n, o in choices.items()}).key()
        batch = rng.sample(range(VAL), MIPRO["minibatch_size"])
        score = statistics.fmean(table[key]["scores"][i] for i in batch)
        study.tell(trial, score)
        minibatch_scores.setdefault(key, []).append(score)
        pairs.update((key, i) for i in batch)
        evaluations += 1
        if trial_num % (MIPRO["full_eval_steps"] + 1) == 0:
            means = sorted(((statistics.fmean(v), k) for k, v in minibatch_scores.items() if k not in fully),
                           reverse=True)
            if means:
                chosen = means[0][1]
                fully.add(chosen)
                pairs.update((chosen, i) for i in range(VAL))
                best, evaluations = max(best, full(table, chosen)), evaluations + 1
        points.append((evaluations, len(pairs), best))
        if len(pairs) >= len(table) * VAL:
            break
    return points


def to_target(points: list[Point], goal: float) -> tuple[int, int] | None:
    """(evaluations, LM calls) when the chosen variant first reaches ``goal``; None if it never does."""
    return next(((e, c) for e, c, best in points if best >= goal - 1e-12), None)


def simulate(seeds: int, strategies: list[str], validation: list[int], out: Path, mipro: bool) -> None:
    """Every strategy on every seed over the recording (progopt's at each ``validation`` size, and TPE with
    MIPROv2's settings unless ``mipro`` is off); writes ``efficiency.json`` and a plot to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    table = load_table()
    optimum = max(full(table, k) for k in table)
    goal, exhaustive_calls = TARGET * optimum, len(table) * VAL
    out.mkdir(parents=True, exist_ok=True)
    runs = {f"progopt {s}" + (f", validation {v}" if v != VAL else ""): [progopt_run(s, seed, table, v)
                                                                       for seed in range(seeds)]
            for s in strategies for v in validation}
    if mipro:
        runs["TPE, MIPROv2 settings"] = [mipro_run(seed, table) for seed in range(seeds)]
    rows, grid = [], np.linspace(0, exhaustive_calls, 200)
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, trajectories in runs.items():
        hits = [to_target(t, goal) for t in trajectories]
        reached = [h for h in hits if h is not None]
        finals = [t[-1][2] for t in trajectories]
        rows.append({"search": name, "runs": len(trajectories), "reached": len(reached),
                     "evaluations_median": statistics.median(h[0] for h in reached) if reached else None,
                     "evaluations_iqr": list(np.percentile([h[0] for h in reached], [25, 75])) if reached else None,
                     "calls_median": statistics.median(h[1] for h in reached) if reached else None,
                     "calls_iqr": list(np.percentile([h[1] for h in reached], [25, 75])) if reached else None,
                     "final_score_mean": statistics.fmean(finals),
                     "final_calls_mean": statistics.fmean(t[-1][1] for t in trajectories)})
        curve = [np.mean([max([b for _, c, b in t if c <= x], default=0.0) for t in trajectories]) for x in grid]
        ax.plot(grid, np.array(curve) / optimum, label=name)
    ax.axhline(TARGET, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="LM calls (distinct variant x example evaluations)", ylabel="chosen variant / optimum (val)",
           title=f"Search efficiency, SST-2, {len(table)} variants x {VAL} examples")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "efficiency.png", dpi=120)
    (out / "efficiency.json").write_text(json.dumps({"optimum": optimum, "goal": goal, "variants": len(table),
                                                     "val": VAL, "seeds": seeds, "rows": rows}, indent=1))
    for row in rows:
        print(json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phase", choices=["record", "simulate"])
    parser.add_argument("--seeds", type=int, default=SEEDS, help="search runs per strategy (simulate)")
    parser.add_argument("--strategies", nargs="+", default=["tpe", "coordinate", "random"])
    parser.add_argument("--validation", nargs="+", type=int, default=[VAL],
                        help="validation examples scoring a promoted variant (simulate; one run set per size)")
    parser.add_argument("--no-mipro", action="store_true", help="leave out the TPE run with MIPROv2's settings")
    parser.add_argument("--out", type=Path, default=OUT, help="where simulate writes (default: the recording's folder)")
    args = parser.parse_args()
    if args.phase == "record":
        record()
    else:
        simulate(args.seeds, args.strategies, args.validation, args.out, not args.no_mipro)


if __name__ == "__main__":
    main()
