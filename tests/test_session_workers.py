"""Recovery with several workers on one study: only trials of workers that are gone are failed and re-queued."""

import socket
import subprocess
import time

import optuna
from optuna.trial import TrialState

from optimizer.models import ModelPool
from optimizer.search.session import Budget, Session
from programs.sentiment import Sentiment, metric


def _session(study: optuna.Study) -> Session:
    return Session(Sentiment(), trainset=[], valset=[], metric=metric, pool=ModelPool.default(),
                   objectives=["quality"], budget=Budget(), seed=0, study=study, strategy="random", minibatch=1,
                   promote_fraction=1.0, max_cost=None, max_p95=None, observer=None, num_threads=1,
                   show_progress=False)


def _running_trial(study: optuna.Study, worker: str, **info) -> int:
    study.set_user_attr(worker, {"calls": 1, "cost": 0.0, "seconds": 1.0, **info})
    trial = study.ask({"classify:model": optuna.distributions.CategoricalDistribution(["a", "b"])})
    trial.set_user_attr("worker", worker)
    return trial.number


def test_recover_keeps_live_workers_trials_and_requeues_gone_ones():
    study = optuna.create_study()
    here = socket.gethostname()
    live = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        alive_trial = _running_trial(study, "spent:live", host=here, pid=live.pid, updated=time.time())
        dead_trial = _running_trial(study, "spent:dead", host=here, pid=dead.pid, updated=time.time())
        remote = _running_trial(study, "spent:remote", host="elsewhere", pid=1, updated=time.time())
        stale = _running_trial(study, "spent:stale", host="elsewhere", pid=1, updated=time.time() - 3600)
        _session(study).recover()
    finally:
        live.kill()
    states = {t.number: t.state for t in study.trials}
    assert states[alive_trial] == states[remote] == TrialState.RUNNING
    assert states[dead_trial] == states[stale] == TrialState.FAIL
    assert sum(t.state == TrialState.WAITING for t in study.trials) == 2  # the gone workers' variants, re-queued
