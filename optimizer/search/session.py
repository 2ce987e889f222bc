"""One run of a (possibly resumed, possibly one of several workers') compile against an Optuna study:
the budget shared through the study, the trial loop, successive-halving promotion and crash recovery.

Invariants, for any number of workers and kills (SIGKILL included):
- a trial stays RUNNING, with a heartbeat (:mod:`optimizer.search.storage`), until its minibatch evaluation
  *and* its promotion are stored; so a kill at any point leaves it RUNNING, it goes stale, and it is failed
  and re-queued with its params and attributes, and redone (its finished LM calls come from the cache);
- a live worker's trial is never failed by another worker: only a stopped heartbeat makes a trial stale;
- a trial that raises in this process is failed and re-queued at once (a later run redoes it);
- a baseline runs once per study: a labelled trial whose label an earlier-numbered trial holds (RUNNING or
  COMPLETE) is pruned as a duplicate; a variant is promoted once: by the earliest trial that qualifies.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress

import dspy
import numpy as np
import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState

from optimizer.accounting import BudgetExhausted, EngineMeter, active_meter, metered
from optimizer.errors import UsageError
from optimizer.evaluate import evaluate
from optimizer.models import ModelPool
from optimizer.records import CompileObserver, Stage, TrialRecord
from optimizer.results import MAX_CALL_FAILURE_RATE, OBJECTIVES, feasible
from optimizer.search.calibrate import calibrate_steps, unscorable
from optimizer.search.samplers import DONE, make_sampler, param_choices, params_of, untried, variant_from_params
from optimizer.search.settings import Budget, Caps, SearchSettings
from optimizer.search.storage import GRACE_S, HEARTBEAT_S, ask, heartbeat, heartbeats
from optimizer.search.study_store import WORKER, Spent, StudyStore, label
from optimizer.space.build import build_program
from optimizer.space.variant import SearchSpace, StepChoice, Variant, is_scoring

# Stop after this many consecutive proposals of already-evaluated variants: the sampler has converged, and
# such trials are free (cached), so a call or cost budget alone would never end the search. After a repeat
# the next trial is an untried variant (samplers.untried), so this ends a search only when none is left, or
# when the untried ones are all skipped.
MAX_REPEATS_IN_A_ROW = 10
# Stop after this many consecutive proposals the search must skip (label scoring on a model or format
# that cannot score): they are free, so only this ends a search whose sampler keeps proposing them.
MAX_SKIPS_IN_A_ROW = 100


def baseline_variant(space: SearchSpace, model: str) -> Variant:
    """The unoptimized program on ``model``: original instruction, no demos, each step's first searched
    strategy that is not label scoring (else its first), JSON if searched."""
    fmt = "json" if "json" in space.formats else space.formats[0]

    def strategy(step: str) -> str:
        options = space.choices(step)["strategy"]
        return next((k for k in options if not is_scoring(k)), options[0])

    return Variant(steps={s: StepChoice(instruction="original", demos="zero", model=model,
                                        strategy=strategy(s), format=fmt) for s in space.steps})


class Session:
    """One run of a (possibly resumed) compile against one Optuna study."""

    def __init__(self, program: dspy.Module, *, trainset: Sequence[dspy.Example], valset: Sequence[dspy.Example],
                 metric: Callable, pool: ModelPool, study: optuna.Study, budget: Budget, search: SearchSettings,
                 caps: Caps, observer: CompileObserver | None):
        self.program, self.trainset, self.metric, self.pool = program, trainset, metric, pool
        # the fidelities: a minibatch screens, the validation subset scores promoted variants ("full"), and the
        # rest of the validation split is held out for the final selection (optimizer.search.selection)
        size = len(valset) if search.validation is None else min(search.validation, len(valset))
        self.valset, self.unseen_val = list(valset[:size]), list(valset[size:])
        self.objectives, self.seed, self.study = list(search.objectives), search.seed, study
        # the search spends the budget less the final selection's share; select_final() restores the whole budget
        self.whole_budget, self.final_top = budget, search.final_top or 0
        self.budget = budget.less(search.final_share) if self.final_top > 1 and search.final_share else budget
        self.sampler = make_sampler(search.sampler)
        self.minibatch, self.promote_fraction = valset[:search.minibatch], search.promote_fraction
        self.max_cost, self.max_p95, self.observer = caps.max_cost_per_example, caps.max_p95_latency_s, observer
        self.num_threads = search.num_threads
        self.repeats = self.skips = 0
        self._inherited: set[int] = set()  # RUNNING when this run started (see recover)
        self.advance: Callable[..., None] = lambda **_: None  # the progress bar, once compile() opens one
        self.status = "building candidates (instructions, demos)"
        self.store = StudyStore(study, uuid.uuid4().hex[:12])  # this worker session's key in the study
        self._others = Spent()  # what the other workers had spent at the last read (see before_call)
        # This run's own meter (see limited()); it also counts in the meter active now (a sweep cell's, say).
        self.meter = EngineMeter(hooks=(self,), parent=active_meter())
        self._t0 = time.monotonic()

    def final_stage(self, status: str) -> int | None:
        """Enter the final selection: the session's limits become the whole budget (the search's reserve
        included) and the progress bar shows ``status``; the calls left (None: calls are not limited)."""
        self.budget, self.status = self.whole_budget, status
        return None if self.budget.calls is None else self.budget.calls - self.spent().calls

    def _own(self) -> Spent:
        return Spent(calls=self.meter.calls, cost=self.meter.cost, seconds=time.monotonic() - self._t0)

    def spent(self) -> Spent:
        """The whole study's spending: every run and worker (seconds are summed over workers)."""
        self._others = self.store.others_spent()
        return self._own() + self._others

    def before_call(self, meter: EngineMeter) -> None:
        """Meter hook, before each call: lower this worker's limits by what the other workers spent so far
        (one read of the study's attributes; none when the budget has no limit)."""
        if self.budget.calls is not None or self.budget.cost is not None or self.budget.seconds is not None:
            meter.set_limits(*self._limits())

    def counted(self, meter: EngineMeter) -> None:
        """Meter hook, after each call is counted: :meth:`save_spent`."""
        self.save_spent()

    def save_spent(self) -> None:
        """Persist this worker's spending (after each counted call and each trial; one write, no read), so a
        kill loses none and the other workers deduct it, and update the progress bar."""
        own = self._own()
        self.store.save_spent(own)
        self.advance(completed=own.calls + self._others.calls, status=self.status)

    def _limits(self) -> tuple[int | None, float | None, float | None]:
        """The meter's (max calls, max cost, deadline) for this worker given what the others spent."""
        self._others = self.store.others_spent()
        b, others = self.budget, self._others
        return (None if b.calls is None else max(b.calls - others.calls, 0),
                None if b.cost is None else max(b.cost - others.cost, 0.0),
                None if b.seconds is None else self._t0 + max(b.seconds - others.seconds, 0.0))

    @contextmanager
    def limited(self) -> Iterator[None]:
        """The block's model calls count against this run's meter, under the study's remaining budget."""
        self.meter.set_limits(*self._limits())
        with metered(self.meter):
            yield

    def space(self, build: Callable[[], SearchSpace], *, models: Sequence[str], strategies: Sequence[str],
              formats: Sequence[str], demo_draws: int = 1, retrieval_sizes: Sequence[int] = (),
              label_words: Sequence[str] = ()) -> SearchSpace:
        """The study's stored space, or a newly built one stored with it (so a resume searches the same).

        A stored space must have the requested models, strategies, formats, demo draws, retrieval sizes and
        label-word sources
        (else :class:`UsageError`:
        a rerun with other options never silently searches the old space). Budget exhaustion during the
        build propagates and nothing is stored. Workers that build concurrently build the same space (the
        build is seeded); each then uses whatever the storage holds."""
        space = self.store.space(build)
        self.save_spent()
        asked = {"models": list(models), "strategies": list(strategies), "formats": list(formats),
                 "demo draws": demo_draws, "retrieval sizes": list(retrieval_sizes), "label words": list(label_words)}
        has = {"models": space.models, "strategies": space.strategies, "formats": space.formats,
               "demo draws": space.demo_draws, "retrieval sizes": space.retrieval_sizes,
               "label words": space.label_words}
        if asked != has:
            diff = "; ".join(f"{k} {has[k]} (asked {asked[k]})" for k in asked if asked[k] != has[k])
            raise UsageError(f"the study searches {diff}: use the same options or another study name",
                             f"study {self.study.study_name}")
        return space

    def evaluate(self, variant: Variant, space: SearchSpace, data: Sequence[dspy.Example], stage: Stage,
                 number: int, label: str | None) -> TrialRecord:
        steps = calibrate_steps(self.program, space.resolve(variant), self.trainset, self.pool.lm)
        runnable = build_program(self.program, steps, self.pool.lm)
        api_only = all(self.pool[s.model].provider != "local" for s in steps.values())
        summary = evaluate(runnable, data, self.metric, threads=self.num_threads if api_only else 1,
                           show_progress=False).summary()
        record = TrialRecord(number=number, variant_key=variant.key(), variant=variant, steps=steps, stage=stage,
                             examples=len(data), summary=summary, label=label)
        if self.observer is not None:
            self.observer.log_trial(record)
        return record

    def recover(self) -> None:
        """Fail and re-queue trials whose worker's heartbeat stopped (killed workers); remember the RUNNING
        trials left, so :meth:`search` can wait for them to finish or go stale before it ends."""
        if heartbeats(self.study):
            fail_stale_trials(self.study)
        self._inherited = self.store.running_numbers()

    def _abandon(self, trial: optuna.Trial) -> None:
        """Fail a trial this process cannot finish and queue its params and attributes again."""
        frozen = self.study._storage.get_trial(trial._trial_id)
        if frozen.state == TrialState.RUNNING:
            self.study.tell(trial, state=TrialState.FAIL)
            RetryHeartbeatStaleTrialCallback()(self.study, frozen)

    def _promote(self, trial: optuna.Trial, record: TrialRecord, space: SearchSpace) -> None:
        """Asynchronous successive halving: variants in the top fraction of minibatch scores so far (and
        every baseline) are evaluated on the whole validation set, once (by the earliest such trial)."""
        if self.store.promoted(record.variant_key):
            return
        scores = [t.values[0] for t in self.store.completed()]
        threshold = float(np.quantile(scores, 1 - self.promote_fraction)) if scores else 0.0
        if record.label is None and (record.summary.score < threshold or
                                     not feasible(record, self.max_cost, self.max_p95)):
            return
        if self.store.claim_promotion(trial, record.variant_key):
            self.store.store_full(self.evaluate(record.variant, space, self.valset, "full", record.number,
                                                record.label))

    def _trial(self, space: SearchSpace, propose: bool = True) -> bool:
        """Run one trial under a heartbeat (the strategy's proposal, or with ``propose=False`` a queued one);
        False when the strategy has nothing left to propose."""
        if heartbeats(self.study):
            fail_stale_trials(self.study)
        self.study.sampler = self.sampler.optuna_sampler(self.seed + len(self.study.trials), len(self.objectives) > 1)
        params = self.sampler.next_params(self.study, space) if propose else None
        if propose and self.repeats and params is None:  # the sampler repeated itself: try what it has not
            params = untried(self.study, space, self.seed + len(self.study.trials)) or DONE
        if params == DONE and not self.store.queued():
            return False
        if params not in (None, DONE):
            self.study.enqueue_trial(params)  # type: ignore[arg-type]
        trial = ask(self.study)
        with heartbeat(self.study, trial):
            try:
                return self._run(trial, space)
            except BaseException:
                self._abandon(trial)
                raise

    def _run(self, trial: optuna.Trial, space: SearchSpace) -> bool:
        """Evaluate the trial's variant on the minibatch, promote it if it qualifies, then tell its values."""
        chosen = {name: trial.suggest_categorical(name, options) for name, options in param_choices(space).items()}
        variant = variant_from_params(space, chosen)
        self.store.start_trial(trial, variant.key())
        if self.store.duplicate_holder(trial) is not None:  # another worker enqueued the same baselines
            self.study.tell(trial, state=TrialState.PRUNED)
            return True
        skip = unscorable(variant, self.pool)
        self.skips = self.skips + 1 if skip else 0
        if skip:  # never evaluated: the study records why, and the samplers see a pruned trial
            trial.set_user_attr("skipped", skip)
            self.study.tell(trial, state=TrialState.PRUNED)
            return self.skips < MAX_SKIPS_IN_A_ROW
        self.repeats = self.repeats + 1 if variant.key() in self.store.evaluated_keys() else 0
        record = self.evaluate(variant, space, self.minibatch, "minibatch", trial.number, label(trial))
        s = record.summary
        if self.max_cost is not None:
            trial.set_constraint("max_cost_per_example", s.cost_per_example - self.max_cost)
        if self.max_p95 is not None:
            trial.set_constraint("max_p95_latency_s", s.latency_p95_s - self.max_p95)
        self.store.record_trial(trial, record, feasible=feasible(record, self.max_cost, self.max_p95),
                                failed=s.call_failure_rate > MAX_CALL_FAILURE_RATE)
        self._promote(trial, record, space)
        self.study.tell(trial, [getattr(s, OBJECTIVES[o][0]) for o in self.objectives])
        self.save_spent()
        return self.repeats < MAX_REPEATS_IN_A_ROW

    def _finish_inherited(self, space: SearchSpace) -> None:
        """Wait (at most ``GRACE_S`` plus two beats) for the trials that were RUNNING when this run started
        to finish or go stale, then redo the re-queued ones, so a trial a killed run left (mid-promotion,
        say) is finished by this run rather than a later one. One still RUNNING that never got a worker
        attribute was asked by a worker killed before its first heartbeat: it is failed and re-queued too
        (judged by this run's own clock, never by timestamps written on another host)."""
        if not heartbeats(self.study) or not self._inherited:
            return
        deadline = time.monotonic() + GRACE_S + 2 * HEARTBEAT_S
        running = lambda: self.store.running_numbers() & self._inherited  # noqa: E731
        while running() and time.monotonic() < deadline:
            time.sleep(HEARTBEAT_S)
            fail_stale_trials(self.study)
        for number in running():  # killed between ask and its first beat: no heartbeat, so never stale
            frozen = self.study.trials[number]
            if WORKER not in frozen.user_attrs:  # a live worker sets it within milliseconds of the ask
                self.study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
                RetryHeartbeatStaleTrialCallback()(self.study, frozen)
        self._inherited = set()
        while self.store.queued():
            self._trial(space, propose=False)

    def search(self, space: SearchSpace) -> None:
        if not self.study.trials:
            self.store.enqueue_baselines((params_of(baseline_variant(space, model)), f"baseline {model}")
                                         for model in space.models)
        self.status = "trials 0"
        try:
            while (self.budget.trials is None or len(self.study.trials) < self.budget.trials) and self._trial(space):
                spent = self.spent()
                best = max((r.summary.score for r in self.store.full_records().values()), default=0.0)
                self.status = (f"trials {len(self.study.trials)} | best val {best:.3f} | US${spent.cost:.5f} | "
                               f"{spent.seconds:.0f}s")
                self.advance(completed=spent.calls, status=self.status)
        except BudgetExhausted:
            pass
        with suppress(BudgetExhausted):  # its trials then stay queued for a later run
            self._finish_inherited(space)
        self.save_spent()
