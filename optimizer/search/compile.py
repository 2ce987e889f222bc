"""``compile``: the joint search over instruction, demos, model, strategy and format per step.

>>> result = compile(Sentiment(), trainset=train, valset=val, metric=metric, budget=Budget(calls=2000))
>>> result.front, result.chosen
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import dspy
import optuna

from optimizer.accounting import BudgetExhausted
from optimizer.data import dataset_hash
from optimizer.models import ModelPool
from optimizer.progress import progress_bar
from optimizer.records import CompileObserver, CompileResult, TrialRecord
from optimizer.results import OBJECTIVES, pareto_front
from optimizer.search.choice import choose_paired
from optimizer.search.defaults import scaled, space_note
from optimizer.search.selection import select_final
from optimizer.search.session import Session
from optimizer.search.settings import Budget, Caps, SearchSettings, SpaceSettings
from optimizer.search.space_builder import build_space
from optimizer.search.storage import as_storage
from optimizer.space.variant import SearchSpace
from optimizer.statistics import aggregate_of

__all__ = ["Budget", "Caps", "SearchSettings", "SpaceSettings", "compile"]

def compile(program: dspy.Module, *, trainset: Sequence[dspy.Example], valset: Sequence[dspy.Example],
            metric: Callable, budget: Budget, models: ModelPool | Sequence[str] | None = None,
            search: SearchSettings | None = None, space: SpaceSettings | None = None, caps: Caps | None = None,
            testset: Sequence[dspy.Example] | None = None, storage: str | optuna.storages.BaseStorage | None = None,
            study_name: str | None = None, program_ref: str | None = None, observer: CompileObserver | None = None,
            show_progress: bool = True) -> CompileResult:
    """Search each step's instruction, demos, model, strategy and format (``space``) with ``search``; return
    every evaluated variant, the validation Pareto front over ``search.objectives`` and the chosen variant
    (highest validation quality within ``caps``, or with ``search.final_top`` the best of the top variants
    re-scored on validation plus held-out training examples: :mod:`optimizer.search.selection`); None takes
    each value object's defaults, and settings left open are filled for the budget
    (:func:`optimizer.search.defaults.scaled`; ``result.space_note`` says what and why). The input program is
    never mutated.

    ``storage`` (an Optuna storage URL, e.g. ``sqlite:///study.db`` or PostgreSQL) makes the compile
    resumable: run it again with the same storage and study name and it continues where it stopped.
    The test split, if given, is used only for the final report."""
    space, search, reasons = scaled(space or SpaceSettings(), search or SearchSettings(), budget, len(valset))
    caps = caps or Caps()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pool = models if isinstance(models, ModelPool) else (
        ModelPool.from_names(models) if models else ModelPool.default())
    objectives, seed = search.objectives, search.seed
    proposer = pool.names[0] if space.proposer == "first" else space.proposer
    teacher = pool.names[0] if space.teacher == "first" else space.teacher
    strategies, formats, draws = space.strategies or (), space.formats, space.demo_draws or 1
    datasets = {"train": dataset_hash(trainset), "val": dataset_hash(valset)}
    if testset is not None:
        datasets["test"] = dataset_hash(testset)
    ref = program_ref or f"{type(program).__module__}:{type(program).__qualname__}"
    name = study_name or f"progopt-{type(program).__name__}-seed{seed}-{datasets['val'][:8]}"
    study = optuna.create_study(study_name=name, storage=as_storage(storage), load_if_exists=True,
                                directions=["maximize" if OBJECTIVES[o][1] > 0 else "minimize" for o in objectives])
    session = Session(program, trainset=trainset, valset=valset, metric=metric, pool=pool, study=study,
                      budget=budget, search=search, caps=caps, observer=observer)
    run_id = observer.start(study_name=name, program=ref, seed=seed, budget=budget.model_dump(),
                            datasets=datasets) if observer else None
    try:
        session.recover()
        with session.limited(), progress_bar("compiling (LM calls)", budget.calls or 0, show_progress) as advance:
            session.advance = advance
            try:
                built = session.space(lambda: build_space(
                    program, trainset, metric, models=pool.names, lm_for=pool.lm, seed=seed, proposer=proposer,
                    teacher=teacher, strategies=strategies, formats=formats, demo_draws=draws,
                    retrieval_sizes=space.retrieval_sizes, label_words=space.label_words or ()),
                    models=pool.names, strategies=strategies, formats=formats, demo_draws=draws,
                    retrieval_sizes=space.retrieval_sizes, label_words=space.label_words or ())
            except BudgetExhausted as exc:
                raise BudgetExhausted(f"the budget ran out while building the search space: {exc}") from exc
            session.search(built)
            select_final(session, built)
        session.advance = lambda **_: None  # the bar is closed
        result = _result(session, built, ref, datasets, testset, run_id)
        result.space_note = space_note(built, budget, reasons)
    except BaseException as exc:
        if observer is not None:
            observer.fail(exc)
        raise
    if observer is not None:
        observer.finish(result)
    return result


def _result(session: Session, space: SearchSpace, ref: str, datasets: dict[str, str],
            testset: Sequence[dspy.Example] | None, run_id: str | None) -> CompileResult:
    from optimizer.refs import source_hash

    trials = session.store.minibatch_records()
    full, finals = session.store.full_records(), session.store.final_records()
    trials += sorted(full.values(), key=lambda r: r.number) + sorted(finals.values(), key=lambda r: r.number)
    baselines = [r for r in full.values() if r.label and r.label.startswith("baseline")]
    candidates = list({**full, **finals}.values()) or [t for t in trials if t.stage == "minibatch"]
    if not candidates:
        raise BudgetExhausted("the budget ran out before any variant was evaluated")
    front = pareto_front(candidates, session.objectives)
    # with a final selection, the choice is among the variants it re-scored (their estimates are comparable)
    choice = choose_paired(list(finals.values()) if len(finals) > 1 else candidates, aggregate_of(session.metric),
                           max_cost=session.max_cost, max_p95=session.max_p95)
    chosen = next(r for r in candidates + list(finals.values()) if r.variant_key == choice.chosen)
    spent = session.spent()  # the test report below is not part of the compile's spending
    session.save_spent()
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
                         choice_note=choice.note,
                         tracking_run_id=run_id, models=dict(session.pool.specs))
