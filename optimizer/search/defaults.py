"""The search a compile gets when the user leaves a choice open: what the budget affords and the measurements
favour, with the reason stated (the compile report prints it).

Every open setting (``None`` in :class:`~optimizer.search.settings.SpaceSettings` or
:class:`~optimizer.search.settings.SearchSettings`) is filled here and nowhere else; a value the user gave is
kept as given (flags narrow the space, never widen it). The rules, each from a committed measurement:

- **label scoring with batch calibration** (``score-bc``) beside ``direct`` on every step whose outputs are all
  labels (the search skips it elsewhere, for free): on a held-out sentiment task at 600 calls, the defaults
  0.787 [0.740, 0.830], with it and 4 demo draws 0.823 [0.780, 0.867]; in the head-to-head it took Gemma's AG
  News from 30.5 to 79.0 (RESULTS.md);
- **demo draws** (label-balanced sets per size): the best of 8 draws beat the single set on 6 of 6 rows by 2.5
  to 18.5 points (experiments/results/demos-2026-11-30.md); each draw is a candidate the search must screen,
  so 1 below :data:`DRAWS_FROM` calls, 4 up to :data:`MORE_DRAWS_FROM`, then 8;
- **final selection** (the top validated variants re-scored on held-out training examples): +1.7 points on
  average over 20 paired cells, 11 wins, 3 losses, all where a quarter of a small budget was taken from a
  search still finding variants; so on from :data:`FINAL_FROM` calls (top :data:`FINAL_TOP`, with
  :data:`FINAL_SHARE` of the calls, as measured).
- **validation fidelity**: one validation example per :data:`CALLS_PER_VALIDATION_EXAMPLE` calls (at least
  :data:`MIN_VALIDATION`) scores each promoted variant, the rest of the split waits for the final selection:
  with all 200 SST-2 validation examples at 1,000 calls the two baselines alone took 400 calls and the search
  evaluated 6 variants (test 0.550, experiments/results/defaults-2026-12-07); the quickstart's 60 examples
  at 600 calls scored 0.790-0.845;
- **label words** (signature words; automatic words from :data:`AUTO_WORDS_FROM` calls) as candidates on label
  steps: on one fixed compact variant with batch-calibrated scoring, TREC coarse 27.5 / 40.5 (SmolLM2 / Gemma)
  with the labels, 39.5 / 51.0 with the signature's words, 44.0 / 51.5 with automatic ones; AG News 36.0 / 77.0 ->
  42.0 / 81.5 automatic; AG News with opaque codes 20.0 / 23.5 -> 60.0 / 79.5; with direct decoding they hurt one
  row (SmolLM2 TREC, 23.5 -> 12.5), so they are candidates the search keeps or drops, never forced
  (experiments/results/label-words-2026-12-07.md);
- ensembles of the best label-scoring finalists are scored whenever the final selection runs (their calls are
  cached by then), and ship only beyond the paired CI (not benchmarked yet);
- retrieved demos stay off: within the CIs on SST-2 at 3-4x the seconds per example.
"""

from __future__ import annotations

from optimizer.search.settings import Budget, SearchSettings, SpaceSettings
from optimizer.space.variant import SearchSpace

DEFAULT_STRATEGIES: tuple[str, ...] = ("direct", "score-bc")
DRAWS_FROM, MORE_DRAWS_FROM = 300, 2000
FINAL_FROM, FINAL_TOP, FINAL_SHARE = 800, 5, 0.25  # as measured in the head-to-head
CALLS_PER_VALIDATION_EXAMPLE, MIN_VALIDATION = 12, 30
AUTO_WORDS_FROM = 300  # automatic label words cost about 8 scoring calls per label and scoring model


def _draws(calls: int | None) -> int:
    if calls is not None and calls < DRAWS_FROM:
        return 1
    return 4 if calls is not None and calls < MORE_DRAWS_FROM else 8


def validation_size(calls: int | None, available: int) -> int:
    """Validation examples per promoted variant: one per :data:`CALLS_PER_VALIDATION_EXAMPLE` calls, at least
    :data:`MIN_VALIDATION`, at most the split."""
    return available if calls is None else min(available, max(MIN_VALIDATION, calls // CALLS_PER_VALIDATION_EXAMPLE))


def scaled(space: SpaceSettings, search: SearchSettings, budget: Budget, validation: int
           ) -> tuple[SpaceSettings, SearchSettings, list[str]]:
    """``space`` and ``search`` with every open setting filled for ``budget`` and a validation split of
    ``validation`` examples, and one reason per filled setting (empty when the user gave them all)."""
    calls = budget.calls
    for_calls = "no call limit" if calls is None else f"{calls} calls"
    fills: dict[str, object] = {}
    reasons: list[str] = []
    if space.strategies is None:
        fills["strategies"] = DEFAULT_STRATEGIES
        reasons.append("label scoring with batch calibration beside direct decoding on label steps")
    if space.label_words is None:
        fills["label_words"] = ("signature", "auto") if calls is None or calls >= AUTO_WORDS_FROM else ("signature",)
        reasons.append(f"label words as candidates on label steps: {' and '.join(fills['label_words'])}")  # type: ignore[arg-type]
    if space.demo_draws is None:
        fills["demo_draws"] = _draws(calls)
        reasons.append(f"{fills['demo_draws']} label-balanced demo draws per size for {for_calls}")
    final: dict[str, object] = {"final_share": FINAL_SHARE} if search.final_share is None else {}
    if search.validation is None:
        final["validation"] = validation_size(calls, validation)
        if final["validation"] < validation:
            reasons.append(f"{final['validation']} of the {validation} validation examples score each promoted "
                           "variant (the rest are held out for the final selection)")
    if search.final_top is None:
        final["final_top"] = FINAL_TOP if calls is None or calls >= FINAL_FROM else 0
        share = search.final_share or FINAL_SHARE
        reasons.append(f"the top {FINAL_TOP} validated variants re-scored on held-out training examples with "
                       f"{share:.0%} of the calls" if final["final_top"] else
                       f"no final re-scoring below {FINAL_FROM} calls")
    return space.model_copy(update=fills), search.model_copy(update=final), reasons


def space_note(space: SearchSpace, budget: Budget, reasons: list[str]) -> str:
    """The compile report's line: "space: 212 variants for 600 calls (because: ...)"."""
    calls = "no call limit" if budget.calls is None else f"{budget.calls} calls"
    why = f"; filled for the budget: {'; '.join(reasons)}" if reasons else "; as given"
    return f"space: {space.size()} variants for {calls}{why}"
