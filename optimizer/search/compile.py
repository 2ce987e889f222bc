"""``compile``: the joint search over instruction, demos, model, strategy and format per step.

>>> result = compile(Sentiment(), trainset=train, valset=val, metric=metric, budget=Budget(calls=2000))
>>> result.front, result.chosen
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import dspy
import optuna
from optuna.trial import TrialState

from optimizer.accounting import METER, BudgetExhausted
from optimizer.data import dataset_hash
from optimizer.models import ModelPool
from optimizer.progress import progress_bar
from optimizer.results import OBJECTIVES, choose, pareto_front
from optimizer.search.records import CompileObserver, CompileResult, TrialRecord
from optimizer.search.session import Budget, Session
from optimizer.search.space_builder import build_space
from optimizer.search.storage import as_storage
from optimizer.space.variant import Format, SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)

__all__ = ["Budget", "compile"]

# Searched by default: DSPy's JSON format and the compact one. On SST-2 at 600 calls, compiles searching
# both chose compact and matched or beat every single-format compile (experiments/results/format-choice-*).
DEFAULT_FORMATS: tuple[Format, ...] = ("json", "compact")
# Label-balanced demo sets per size (DSPy's random search tries 16 programs) and retrieved-demo sizes.
DEFAULT_DEMO_DRAWS = 4
DEFAULT_RETRIEVAL_SIZES: tuple[int, ...] = (4,)


def compile(program: dspy.Module, *, trainset: Sequence[dspy.Example], valset: Sequence[dspy.Example],
            metric: Callable, budget: Budget, models: ModelPool | Sequence[str] | None = None,
            objectives: Sequence[str] = ("quality", "cost"), seed: int = 0,
            storage: str | optuna.storages.BaseStorage | None = None,
            study_name: str | None = None, strategy: str = "tpe", testset: Sequence[dspy.Example] | None = None,
            max_cost_per_example: float | None = None, max_p95_latency_s: float | None = None,
            formats: Sequence[Format] = DEFAULT_FORMATS, strategies: Sequence[str] = ("direct",),
            proposer: str | None = "first", teacher: str | None = "first", minibatch: int = 16,
            promote_fraction: float = 1 / 3, program_ref: str | None = None, observer: CompileObserver | None = None,
            num_threads: int = 8, show_progress: bool = True, demo_draws: int = DEFAULT_DEMO_DRAWS,
            retrieval_sizes: Sequence[int] = DEFAULT_RETRIEVAL_SIZES) -> CompileResult:
    """Search each step's instruction, demos, model, strategy and format; return every evaluated variant,
    the validation Pareto front over ``objectives`` and the chosen variant (highest validation quality
    within ``max_cost_per_example`` / ``max_p95_latency_s``). The input program is never mutated.

    ``storage`` (an Optuna storage URL, e.g. ``sqlite:///study.db`` or PostgreSQL) makes the compile
    resumable: run it again with the same storage and study name and it continues where it stopped.
    ``proposer``/``teacher``: pool members that propose instructions and bootstrap demos ("first" is the
    first pool model, None disables). ``num_threads``: examples evaluated concurrently for a variant whose
    every step runs on an API model (local models serve one call at a time, in KV-prefix order).
    ``demo_draws``: label-balanced demo sets per size (differently seeded and ordered); ``retrieval_sizes``: a
    retrieved-demo candidate ``knn{k}`` per size (k most similar training examples per input; () disables).
    The test split, if given, is used only for the final report."""
    pool = models if isinstance(models, ModelPool) else (
        ModelPool.from_names(models) if models else ModelPool.default())
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown or objectives[0] != "quality":
        raise ValueError(f"objectives must start with 'quality' and use {sorted(OBJECTIVES)}; got {objectives}")
    proposer = pool.names[0] if proposer == "first" else proposer
    teacher = pool.names[0] if teacher == "first" else teacher
    datasets = {"train": dataset_hash(trainset), "val": dataset_hash(valset)}
    if testset is not None:
        datasets["test"] = dataset_hash(testset)
    ref = program_ref or f"{type(program).__module__}:{type(program).__qualname__}"
    name = study_name or f"progopt-{type(program).__name__}-seed{seed}-{datasets['val'][:8]}"
    study = optuna.create_study(study_name=name, storage=as_storage(storage), load_if_exists=True,
                                directions=["maximize" if OBJECTIVES[o][1] > 0 else "minimize" for o in objectives])
    session = Session(program, trainset=trainset, valset=valset, metric=metric, pool=pool, objectives=objectives,
                       budget=budget, seed=seed, study=study, strategy=strategy, minibatch=minibatch,
                       promote_fraction=promote_fraction, max_cost=max_cost_per_example,
                       max_p95=max_p95_latency_s, observer=observer, num_threads=num_threads,
                       show_progress=show_progress)
    run_id = observer.start(study_name=name, program=ref, seed=seed, budget=budget.model_dump(),
                            datasets=datasets) if observer else None
    METER.refreshers.append(session._refresh)
    METER.listeners.append(session._save_spent)
    try:
        session.recover()
        with session.limited(), progress_bar("compiling (LM calls)", budget.calls or 0, show_progress) as advance:
            session.advance = advance
            try:
                space = session.space(lambda: build_space(
                    program, trainset, metric, models=pool.names, lm_for=pool.lm, seed=seed, proposer=proposer,
                    teacher=teacher, strategies=strategies, formats=formats, demo_draws=demo_draws,
                    retrieval_sizes=retrieval_sizes),
                    models=pool.names, strategies=strategies, formats=formats)
            except BudgetExhausted as exc:
                raise BudgetExhausted(f"the budget ran out while building the search space: {exc}") from exc
            session.search(space)
        session.advance = lambda **_: None  # the bar is closed
        result = _result(session, space, ref, datasets, testset, run_id)
    except BaseException as exc:
        if observer is not None:
            observer.fail(exc)
        raise
    finally:
        session.detach()
    if observer is not None:
        observer.finish(result)
    return result


def _result(session: Session, space: SearchSpace, ref: str, datasets: dict[str, str],
            testset: Sequence[dspy.Example] | None, run_id: str | None) -> CompileResult:
    from optimizer.refs import source_hash

    study = session.study
    trials = [TrialRecord.model_validate_json(t.user_attrs["record"])
              for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    full = session.full_records()
    trials += sorted(full.values(), key=lambda r: r.number)
    baselines = [r for r in full.values() if r.label and r.label.startswith("baseline")]
    candidates = list(full.values()) or [t for t in trials if t.stage == "minibatch"]
    if not candidates:
        raise BudgetExhausted("the budget ran out before any variant was evaluated")
    front = pareto_front(candidates, session.objectives)
    chosen = choose(candidates, max_cost=session.max_cost, max_p95=session.max_p95)
    spent = session.spent()  # the test report below is not part of the compile's spending
    session._save_spent()
    session.detach()
    test: list[TrialRecord] = []
    if testset is not None:
        report = {r.variant_key: r for r in [*front, *baselines, chosen]}
        test = [session.evaluate(r.variant, space, testset, "test", r.number, r.label) for r in report.values()]
    try:
        program_hash = source_hash(ref)
    except ImportError:
        program_hash = ""
    return CompileResult(program=ref, program_hash=program_hash, seed=session.seed,
                         budget=session.budget.model_dump(), spent=spent.model_dump(), space=space,
                         datasets=datasets, trials=trials, baselines=baselines,
                         front=[r.variant_key for r in front], chosen=chosen.variant_key, test=test,
                         tracking_run_id=run_id, models=dict(session.pool.specs))
