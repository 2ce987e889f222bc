"""The final selection of a compile: the search's best validated variants re-scored on the validation
examples they were scored on, plus the validation examples the search did not use and training examples that
none of them shows as a demo, and the choice among them (:mod:`optimizer.search.choice`).

Why: the search keeps the best of many noisy validation scores, so the variant it keeps is overestimated
(the winner's curse): on the head-to-head sweep the chosen variant's validation score exceeded its test score
by 4.5 to 9.5 points with 100 validation examples, and a variant ranked below it on validation was better on
test (``experiments/results/reselect-2026-12-01.md``). More examples for the last decision cost a share of
the budget, taken from the search.

Lifecycle: with ``SearchSettings.final_top`` K > 1, the session searches under the budget less
``final_share``; then :func:`select_final` takes the K feasible variants with the best full-validation scores,
holds out the validation examples beyond ``SearchSettings.validation`` and then the training examples none of
them shows as a fixed demo (the same examples for all K; a step with retrieved demos never retrieves the
scored example itself), as many as the rest of the call budget pays for (at least :data:`MIN_HOLDOUT`, else
the stage is skipped), and evaluates each variant on the validation examples it was scored on plus that
holdout (the validation part comes from the response cache), so the K are compared paired on the same,
larger sample. Each ``final`` record is stored in the study as
soon as it is measured, so a resumed compile redoes none; budget exhaustion midway keeps the finished ones.
Then the **ensembles** of the best 2 and 3 label-scoring finalists (:func:`ensembles`) are scored on the same
examples, as ``final`` records like the others: an ensemble averages its members' calibrated label
distributions, and costs the sum of their calls (all cached here), so the choice's tie rule (more valid, then
cheaper) ships it only when it beats every single variant beyond the paired CI.
The compile then chooses among the ``final`` records when at least two exist, else by validation alone.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import dspy

from optimizer.accounting import BudgetExhausted
from optimizer.records import TrialRecord
from optimizer.results import feasible
from optimizer.search.session import Session
from optimizer.space.variant import SearchSpace, Variant

MIN_HOLDOUT = 20  # fewer held-out examples than this would not change a decision made on validation
ENSEMBLE_SIZES = (2, 3)


def top_validated(records: Sequence[TrialRecord], k: int, max_cost: float | None = None,
                  max_p95: float | None = None) -> list[TrialRecord]:
    """The ``k`` feasible full-validation records with the best scores (ties: cheaper, then earlier)."""
    ok = [r for r in records if feasible(r, max_cost, max_p95)]
    return sorted(ok, key=lambda r: (-r.summary.score, r.summary.cost_per_example, r.number))[:k]


def holdout(trainset: Sequence[dspy.Example], records: Sequence[TrialRecord], fields: Sequence[str]
            ) -> list[dspy.Example]:
    """The training examples whose ``fields`` no record shows as a fixed demo, in training order."""
    key = lambda ex: tuple(str(ex.get(f)) for f in fields)  # noqa: E731
    shown = {key(d) for r in records for step in r.steps.values() for d in step.demos}
    return [ex for ex in trainset if key(ex) not in shown]


def affordable(records: Sequence[TrialRecord], remaining_calls: int | None, available: int) -> int:
    """How many held-out examples the remaining calls pay for, for every record (its calls per example on
    validation, at least one); all of them when calls are not limited."""
    if remaining_calls is None:
        return available
    per_example = sum(max(r.summary.lm_calls / max(r.examples, 1), 1.0) for r in records)
    return min(available, int(remaining_calls / per_example))


def select_final(session: Session, space: SearchSpace) -> dict[str, TrialRecord]:
    """After :meth:`Session.search`: restore the session's whole budget (the final share included), re-score
    its top ``final_top`` validated variants (see the module doc) and return every final record the study
    holds, by variant key; none when ``final_top`` is below 2."""
    k = session.final_top
    if k < 2:
        return {}
    remaining = session.final_stage(f"final selection of the top {k}")
    done = session.store.final_records()
    top = top_validated(list(session.store.full_records().values()), k, session.max_cost, session.max_p95)
    if len(top) < 2:
        return done
    fields = sorted({f for _, p in session.program.named_predictors() for f in p.signature.input_fields})
    held = [*session.unseen_val, *holdout(session.trainset, top, fields)]
    todo = [r for r in top if r.variant_key not in done]
    # a resumed run sizes the holdout as the first did: what the finished records used counts as available
    size = next((r.examples - len(session.valset) for r in done.values()), None)
    if size is None:
        size = affordable(todo, remaining, len(held))
    if size < MIN_HOLDOUT:
        return done
    # the unused validation examples first (the split meant for measuring), then a seeded sample of the rest
    take, unseen = min(size, len(held)), len(session.unseen_val)
    first = min(take, unseen)
    chosen = [*range(first), *sorted(random.Random(session.seed).sample(range(unseen, len(held)), take - first))]
    data = [*session.valset, *(held[i] for i in chosen)]
    try:
        for record in todo:
            final = session.evaluate(record.variant, space, data, "final", record.number, record.label)
            session.store.store_final(final)
            session.save_spent()
        done = session.store.final_records()
        for variant in ensembles(list(done.values())):
            if variant.key() not in done:
                members = [done[m.key()] for m in variant.members]
                record = session.evaluate(variant, space, data, "final", max(m.number for m in members),
                                          f"ensemble of {len(members)}")
                session.store.store_final(record)
                session.save_spent()
    except BudgetExhausted:
        pass  # the finished records stand; the choice uses them if at least two finished
    return session.store.final_records()


def ensembles(finals: Sequence[TrialRecord]) -> list[Variant]:
    """Ensemble candidates of the final stage: the best 2 and 3 (:data:`ENSEMBLE_SIZES`) single variants whose
    every step scores labels, by final score (ties: cheaper). Each member's scoring calls on the final data
    are already in the response cache, so an ensemble's evaluation costs no new model call."""
    scored = sorted((r for r in finals if not r.variant.members and r.steps
                     and all(s.strategy == "score" for s in r.steps.values())),
                    key=lambda r: (-r.summary.score, r.summary.cost_per_example, r.variant_key))
    return [Variant.ensemble([r.variant for r in scored[:n]]) for n in ENSEMBLE_SIZES if len(scored) >= n]
