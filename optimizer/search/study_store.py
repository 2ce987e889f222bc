"""What a compile's Optuna study holds, and under which keys: every key but one is written and read here.

Study user attributes: ``space`` (the :class:`SearchSpace` JSON, stored once), ``full:<variant key>`` (a
promoted variant's full-validation :class:`TrialRecord`), ``final:<variant key>`` (its final-selection
record, :mod:`optimizer.search.selection`), ``spent:<worker>`` (a worker session's
:class:`Spent`). Trial user attributes: ``worker``, ``variant_key``, ``label`` (baselines), ``record`` (the
minibatch :class:`TrialRecord`), ``feasible``, ``failed_variant``, ``promoting`` and ``duplicate_of``; one
more, ``skipped`` (why a variant was never evaluated), is set by :mod:`optimizer.search.session`. The
keys are the study's on-disk format: a study written by an earlier version resumes unchanged.

Every operation is safe under concurrent workers of one study (separate processes, any storage): each
worker writes only its own ``spent:`` key and its own trials' attributes; the space is written by whoever
finds it absent (workers build the same seeded space) and read back; a promotion is claimed by writing
the claim first and then yielding to any earlier-numbered live trial holding the same claim, so of two
racing trials exactly the earlier one promotes."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel

from optimizer.records import TrialRecord
from optimizer.space.variant import SearchSpace

SPACE, FULL_PREFIX, FINAL_PREFIX, SPENT_PREFIX = "space", "full:", "final:", "spent:"
RECORD, WORKER, VARIANT_KEY, LABEL = "record", "worker", "variant_key", "label"
FEASIBLE, FAILED_VARIANT, PROMOTING, DUPLICATE_OF = "feasible", "failed_variant", "promoting", "duplicate_of"
LIVE = (TrialState.RUNNING, TrialState.COMPLETE)


class Spent(BaseModel):
    """What a worker session (or the whole study) spent: model calls, US$, wall seconds."""

    calls: int = 0
    cost: float = 0.0
    seconds: float = 0.0

    def __add__(self, other: Spent) -> Spent:
        return Spent(calls=self.calls + other.calls, cost=self.cost + other.cost, seconds=self.seconds + other.seconds)


def label(trial: FrozenTrial | optuna.Trial) -> str | None:
    return trial.user_attrs.get(LABEL)


def is_feasible(trial: FrozenTrial) -> bool:
    """Whether a finished trial met the caps (trials stored without the flag count as feasible)."""
    return bool(trial.user_attrs.get(FEASIBLE, True))


class StudyStore:
    """Typed reads and writes of one study for one worker session (``worker``: its ``spent:`` key suffix)."""

    def __init__(self, study: optuna.Study, worker: str):
        self.study, self.worker = study, worker
        self._spent_key = f"{SPENT_PREFIX}{worker}"

    # -- study attributes ---------------------------------------------------------------------------------
    def space(self, build: Callable[[], SearchSpace]) -> SearchSpace:
        """The stored space, or ``build()``'s, stored first if none is (an exception in ``build`` stores
        nothing)."""
        stored = self.study.user_attrs.get(SPACE)
        if stored is None:
            self.study.set_user_attr(SPACE, build().model_dump_json())
            stored = self.study.user_attrs[SPACE]
        return SearchSpace.model_validate_json(stored)

    def save_spent(self, spent: Spent) -> None:
        """This worker's spending so far (one write; nothing is read)."""
        self.study.set_user_attr(self._spent_key, spent.model_dump())

    def others_spent(self) -> Spent:
        """What earlier runs and concurrent workers of this study spent (one read of the study's attributes)."""
        total = Spent()
        for key, value in self.study.user_attrs.items():
            if key.startswith(SPENT_PREFIX) and key != self._spent_key:
                total += Spent(**value)
        return total

    def full_records(self) -> dict[str, TrialRecord]:
        """The full-validation record of every promoted variant, by variant key."""
        return {k[len(FULL_PREFIX):]: TrialRecord.model_validate_json(v) for k, v in self.study.user_attrs.items()
                if k.startswith(FULL_PREFIX)}

    def final_records(self) -> dict[str, TrialRecord]:
        """The final-selection record of every variant re-scored so far, by variant key."""
        return {k[len(FINAL_PREFIX):]: TrialRecord.model_validate_json(v) for k, v in self.study.user_attrs.items()
                if k.startswith(FINAL_PREFIX)}

    def store_final(self, record: TrialRecord) -> None:
        self.study.set_user_attr(f"{FINAL_PREFIX}{record.variant_key}", record.model_dump_json())

    def promoted(self, variant_key: str) -> bool:
        return f"{FULL_PREFIX}{variant_key}" in self.study.user_attrs

    def store_full(self, record: TrialRecord) -> None:
        self.study.set_user_attr(f"{FULL_PREFIX}{record.variant_key}", record.model_dump_json())

    # -- trials -------------------------------------------------------------------------------------------
    def completed(self) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))

    def minibatch_records(self) -> list[TrialRecord]:
        """The minibatch record of every completed trial, in trial order."""
        return [TrialRecord.model_validate_json(t.user_attrs[RECORD]) for t in self.completed()]

    def evaluated_keys(self) -> set[str]:
        return {t.user_attrs.get(VARIANT_KEY) for t in self.completed()}

    def start_trial(self, trial: optuna.Trial, variant_key: str) -> None:
        """Mark ``trial`` as this worker's, running ``variant_key``."""
        trial.set_user_attr(WORKER, self.worker)
        trial.set_user_attr(VARIANT_KEY, variant_key)

    def duplicate_holder(self, trial: optuna.Trial) -> FrozenTrial | None:
        """An earlier live trial holding ``trial``'s baseline label (another worker enqueued the same
        baselines), recorded on ``trial``; None for an unlabelled trial or the label's first holder."""
        name = label(trial)
        holder = self._earlier(trial.number, lambda t: label(t) == name) if name else None
        if holder is not None:
            trial.set_user_attr(DUPLICATE_OF, holder.number)
        return holder

    def record_trial(self, trial: optuna.Trial, record: TrialRecord, *, feasible: bool, failed: bool) -> None:
        trial.set_user_attr(RECORD, record.model_dump_json())
        trial.set_user_attr(FEASIBLE, feasible)
        trial.set_user_attr(FAILED_VARIANT, failed)

    def claim_promotion(self, trial: optuna.Trial, variant_key: str) -> bool:
        """Whether ``trial`` is the one to promote ``variant_key``: not yet promoted, and no earlier live
        trial claims it. The claim is written before the check (see the module docstring); a trial that
        yields withdraws its claim."""
        if self.promoted(variant_key):
            return False
        trial.set_user_attr(PROMOTING, variant_key)
        if self._earlier(trial.number, lambda t: t.user_attrs.get(PROMOTING) == variant_key) is not None:
            trial.set_user_attr(PROMOTING, None)
            return False
        return True

    def queued(self) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))

    def running_numbers(self) -> set[int]:
        return {t.number for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}

    def enqueue_baselines(self, baselines: Iterable[tuple[dict, str]]) -> None:
        """Queue each ``(params, label)`` once per study (an identical queued trial is not added again)."""
        for params, name in baselines:
            self.study.enqueue_trial(params, user_attrs={LABEL: name}, skip_if_exists=True)

    def _earlier(self, number: int, match: Callable[[FrozenTrial], bool]) -> FrozenTrial | None:
        """An earlier-numbered RUNNING or COMPLETE trial satisfying ``match`` (it owns the work)."""
        return next((t for t in self.study.get_trials(deepcopy=False, states=LIVE)
                     if t.number < number and match(t)), None)
