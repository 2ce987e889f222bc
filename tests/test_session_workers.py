"""Recovery with several workers on one study (Optuna heartbeats): only trials whose worker stopped beating
are failed and re-queued, however long a live worker's call takes; failures in-process re-queue at once;
budget exhaustion while building the space is never swallowed; a rerun with other options is refused."""

import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from optimizer.accounting import BudgetExhausted
from optimizer.errors import UsageError
from optimizer.models import ModelPool
from optimizer.search.compile import Budget, Caps, SearchSettings, SpaceSettings, compile
from optimizer.search.session import Session
from optimizer.search.storage import heartbeat, open_storage
from programs.sentiment import TASK, Sentiment, metric
from tests.fixtures.search_case import replay_pool

CHOICE = {"classify:model": optuna.distributions.CategoricalDistribution(["a", "b"])}


def _session(study: optuna.Study) -> Session:
    return Session(Sentiment(), trainset=[], valset=[], metric=metric, pool=ModelPool.default(), study=study,
                   budget=Budget(), search=SearchSettings(sampler="random", objectives=("quality",), minibatch=1,
                                         promote_fraction=1.0, num_threads=1), caps=Caps(), observer=None)


def test_recover_keeps_a_beating_workers_trial_and_requeues_one_whose_heartbeat_stopped(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_s=1, grace_s=2)
    study = optuna.create_study(storage=storage)
    live, dead = study.ask(CHOICE), study.ask(CHOICE)
    dead.set_user_attr("label", "baseline b")
    storage.record_heartbeat(dead._trial_id)  # its worker beat once, then was killed
    stop = threading.Event()

    def live_worker() -> None:  # one very long LM call: the trial keeps beating all along
        with heartbeat(study, live):
            stop.wait()

    thread = threading.Thread(target=live_worker)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while study.trials[dead.number].state == TrialState.RUNNING and time.monotonic() < deadline:
            time.sleep(0.5)
            _session(study).recover()
    finally:
        stop.set()
        thread.join()
    states = {t.number: t.state for t in study.trials}
    assert states[live.number] == TrialState.RUNNING and states[dead.number] == TrialState.FAIL
    (queued,) = study.get_trials(states=(TrialState.WAITING,))
    assert queued.params == study.trials[dead.number].params and queued.user_attrs["label"] == "baseline b"
    study.tell(live, 1.0)  # the live worker finishes normally (no UpdateFinishedTrialError)


def _compile(storage: str, metric_fn=metric, **kw) -> object:
    return compile(Sentiment(), trainset=TASK.load("train", limit=40), valset=TASK.load("val", limit=12),
                   metric=metric_fn, models=replay_pool(), budget=Budget(**{"trials": 4, **kw.pop("budget", {})}),
                   search=SearchSettings(sampler="random", objectives=("quality",), minibatch=12,
                                         promote_fraction=1.0, seed=0, final_top=0),
                   space=SpaceSettings(formats=kw.pop("formats", ("json",)), demo_draws=kw.pop("demo_draws", 1),
                                       proposer=None, teacher=None, strategies=("direct",), label_words=()),
                   storage=storage, study_name="s", show_progress=False, **kw)


def test_a_trial_that_raises_is_failed_and_requeued_and_a_rerun_finishes_it(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    calls = []

    def flaky(example, pred, trace=None):
        calls.append(1)
        if len(calls) == 15:  # inside the first baseline's promotion (12 minibatch examples, then full)
            raise RuntimeError("metric crashed")
        return metric(example, pred, trace)

    with pytest.raises(RuntimeError, match="metric crashed"):
        _compile(storage, flaky)
    study = optuna.load_study(study_name="s", storage=storage)
    assert [t.state for t in study.trials][:2] == [TrialState.FAIL, TrialState.WAITING]
    assert not study.get_trials(states=(TrialState.RUNNING,))
    result = _compile(storage)
    study = optuna.load_study(study_name="s", storage=storage)
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    assert len(result.baselines) == 2  # the interrupted promotion was redone


def test_a_rerun_with_other_options_is_refused_by_the_stored_space(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    _compile(storage)
    with pytest.raises(UsageError, match=r"the study searches formats \['json'\] \(asked \['json', 'compact'\]\)"):
        _compile(storage, formats=("json", "compact"))
    with pytest.raises(UsageError, match=r"the study searches demo draws 1 \(asked 3\)"):
        _compile(storage, demo_draws=3)


def test_running_out_of_budget_while_building_the_space_stops_the_compile_and_stores_no_space(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    with pytest.raises(BudgetExhausted, match="while building the search space"):
        compile(Sentiment(), trainset=TASK.load("train", limit=40), valset=TASK.load("val", limit=12),
                metric=metric, models=replay_pool(), budget=Budget(calls=3),
                search=SearchSettings(objectives=("quality",)), space=SpaceSettings(proposer=None, teacher="first"),
                storage=storage, study_name="s", show_progress=False)
    assert "space" not in optuna.load_study(study_name="s", storage=storage).user_attrs


@pytest.mark.slow  # a worker process killed and its heartbeat waited out
def test_a_trial_whose_worker_was_killed_before_its_first_heartbeat_is_redone(tmp_path, monkeypatch):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    _compile(storage, budget={"trials": 3})
    study = optuna.load_study(study_name="s", storage=storage)
    orphan = study.ask()  # asked, then killed: no heartbeat, no worker attribute
    monkeypatch.setattr("optimizer.search.session.GRACE_S", 1)
    _compile(storage, budget={"trials": 6})
    study = optuna.load_study(study_name="s", storage=storage)
    assert study.trials[orphan.number].state == TrialState.FAIL
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
