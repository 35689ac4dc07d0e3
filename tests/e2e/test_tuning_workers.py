"""Tuning workers as processes against PostgreSQL: one study, three workers, one killed
mid-trial; its trial is failed by heartbeat and retried, and the study ends with exactly
n_trials finished trials."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from tasks.training.boosting import open_study
from tasks.training.workers import shared_storage
from tests.e2e.conftest import REPO, cli_env, postgres_database

pytestmark = pytest.mark.slow

N_TRIALS = 9
# a worker on a toy objective (a trial sleeps): the same loop the hpo-worker runs
WORKER = """
import sys, time
from tasks.training.boosting import open_study
from tasks.training.workers import StudyLock, run_trials, shared_storage, worker_sampler

url, name, worker, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
store = shared_storage(url, heartbeat_s=1, grace_s=3)
study = open_study(name, store, 42, worker_sampler(42, worker))

def objective(trial):
    x = trial.suggest_float("x", -3, 3)
    print("trial", trial.number, flush=True)
    time.sleep(1.5)
    return x * x

print("ran", run_trials(study, objective, n, StudyLock(store, name), worker, poll_s=0.3),
      flush=True)
"""


def _running_on(study: optuna.Study, worker: int) -> optuna.trial.FrozenTrial | None:
    return next((t for t in study.get_trials(states=(TrialState.RUNNING,))
                 if t.user_attrs.get("worker") == worker), None)


def test_a_killed_worker_s_trial_is_retried_and_the_study_ends_at_n_trials():
    with postgres_database("hpo22_workers") as uri:
        url = uri.replace("postgresql://", "postgresql+psycopg://")
        open_study("workers", shared_storage(url), 42)  # once, before the fan-out
        procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, "workers", str(w),
                                   str(N_TRIALS)], cwd=REPO, env=cli_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True)
                 for w in range(3)]
        study = optuna.load_study(study_name="workers", storage=url)
        deadline = time.monotonic() + 120
        while (killed := _running_on(study, 1)) is None:
            assert time.monotonic() < deadline, "worker 1 never started a trial"
            time.sleep(0.2)
        os.killpg(procs[1].pid, signal.SIGKILL)  # mid-trial: no tell, no last heartbeat
        outputs = [p.communicate(timeout=180) for p in procs]
        assert [p.returncode for p in procs] == [0, -signal.SIGKILL, 0], [o[1][-800:]
                                                                         for o in outputs]
        trials = study.get_trials()
        states = [t.state for t in trials]
        assert states.count(TrialState.COMPLETE) == N_TRIALS
        assert states.count(TrialState.FAIL) == 1
        assert not {TrialState.RUNNING, TrialState.WAITING} & set(states)
        failed = next(t for t in trials if t.state == TrialState.FAIL)
        assert failed.number == killed.number
        retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
        assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
        # the same point, run by another worker: what the lost trial had suggested is fixed (a
        # kill mid-suggestion leaves only the first parameters; the rest are sampled anew)
        assert failed.params.items() <= retried[0].params.items(), (failed.params,
                                                                    retried[0].params)
        assert retried[0].user_attrs["worker"] in (0, 2)
        ran = [int(o[0].split("ran ")[-1]) for i, o in enumerate(outputs) if i != 1]
        assert sum(ran) == N_TRIALS - sum(t.user_attrs.get("worker") == 1 for t in trials
                                          if t.state == TrialState.COMPLETE)


def test_workers_created_at_once_on_an_existing_study_agree_on_its_name():
    """Workers only ever load the study the parent created: joining twice is harmless."""
    with postgres_database("hpo22_join") as uri:
        url = uri.replace("postgresql://", "postgresql+psycopg://")
        first = open_study("s", shared_storage(url), 1)
        again = open_study("s", shared_storage(url), 1)
        assert first._study_id == again._study_id


def test_a_waiting_worker_is_woken_when_another_finds_the_study_full():
    """Workers with nothing left to reserve wait for the others' last trials; the one that
    finds the study full wakes them (PostgreSQL NOTIFY), so they stop with it, not a poll
    (1 s) later. A wake-up sent between the first look and the wait is not lost."""
    import threading

    from tasks.training.workers import StudyLock

    with postgres_database("tuning_wake") as uri:
        store = shared_storage(uri.replace("postgresql://", "postgresql+psycopg://"))
        waiting, full = StudyLock(store, "wake"), StudyLock(store, "wake")
        other = StudyLock(store, "another study")
        assert waiting.wait(600) is False  # starts listening, returns at once
        full.wake()  # before the wait: kept for it
        assert waiting.wait(600) is True
        other.wake()  # another study's workers: not this one's
        assert waiting.wait(1) is False
        woken: list[bool] = []
        thread = threading.Thread(target=lambda: woken.append(waiting.wait(600)))
        thread.start()
        full.wake()
        thread.join(120)
        assert woken == [True]
        waiting.close()
        full.close()
        store.engine.dispose()
