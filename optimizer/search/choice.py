"""The compile's last decision: which evaluated variant ships, and how sure the choice is.

The candidates are the most complete records of one stage (the final selection's when at least two exist,
else full validation), all scored on the same examples, so two of them compare *paired*
(:func:`optimizer.statistics.paired_difference`). The leader is the highest score within the caps (ties:
cheaper, then by key). A candidate whose paired 95% CI of the difference to the leader includes 0 is
statistically tied with it; among the leader and its ties the most valid ships (an output that does not
parse is a failure the score only partly shows: on CoNLL-2003 a variant 88% valid on validation led 96-100%
valid ones by under a point and failed 12.5% of test sentences), then the cheapest (cost is an objective;
a difference inside the CI is not: on SST-2 seed 0 at 1,000 calls the leader scored 0.810 on test and the
cheaper tied label-scoring variant 0.873, experiments/results/defaults-2026-12-07). The note states the
chosen score, its CI, the stage and the ties, so a report never presents a coin flip as a win.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from optimizer.records import TrialRecord
from optimizer.results import choose, feasible
from optimizer.statistics import Aggregate, paired_difference


class Choice(BaseModel):
    """The chosen record's key, its estimate, and the candidates statistically tied with the leader."""

    chosen: str
    leader: str
    tied: list[str] = []
    note: str = ""


def _comparable(a: TrialRecord, b: TrialRecord) -> bool:
    return (a.stage == b.stage and a.examples == b.examples and len(a.summary.paired_rows()) == a.examples
            and len(b.summary.paired_rows()) == b.examples)


def choose_paired(records: Sequence[TrialRecord], aggregate: Aggregate, *, max_cost: float | None = None,
                  max_p95: float | None = None) -> Choice:
    """The choice among ``records`` (see the module doc); ``aggregate`` combines a record's rows (the
    metric's: the mean, or micro F1)."""
    leader = choose(records, max_cost=max_cost, max_p95=max_p95)
    if not feasible(leader, max_cost, max_p95):
        return Choice(chosen=leader.variant_key, leader=leader.variant_key,
                      note=_estimate(leader) + "; no variant met the caps: the cheapest ships")
    tied = []
    for other in records:
        if other.variant_key == leader.variant_key or not feasible(other, max_cost, max_p95):
            continue
        if _comparable(leader, other):
            _, (low, high) = paired_difference(leader.summary.paired_rows(), other.summary.paired_rows(), aggregate)
            if low <= 0 <= high:
                tied.append(other)
    chosen = min([leader, *tied], key=lambda r: (-r.summary.validity_rate, r.summary.cost_per_example,
                                                 -r.summary.score, r.variant_key))
    note = _estimate(chosen)
    if tied:
        note += (f"; statistically tied with {len(tied)} other variant{'s' if len(tied) > 1 else ''} (the paired "
                 f"95% CI of the difference to the leader includes 0: {', '.join(r.variant_key for r in tied)})")
        note += (f"; shipped over the leader {leader.variant_key} ({leader.summary.score:.3f}, "
                 f"{leader.summary.validity_rate:.0%} valid, US${leader.summary.cost_per_example:.2e}/example) "
                 f"as the {'more valid' if chosen.summary.validity_rate > leader.summary.validity_rate else 'cheaper'}"
                 if chosen is not leader else "; the leader ships (no tied variant is more valid or cheaper)")
    return Choice(chosen=chosen.variant_key, leader=leader.variant_key, tied=[r.variant_key for r in tied],
                  note=note)


def _estimate(record: TrialRecord) -> str:
    low, high = record.summary.score_ci
    where = {"final": "validation plus held-out training examples", "full": "validation",
             "minibatch": "a validation minibatch"}.get(record.stage, record.stage)
    return (f"chosen {record.variant_key}: {record.summary.score:.3f} [{low:.3f}, {high:.3f}] on "
            f"{record.examples} examples ({where}), {record.summary.validity_rate:.0%} valid")
