"""Tuning workers (`training.workers: N`): one Optuna study in PostgreSQL, created once before
the fan-out and tuned by N processes that stop together at the study's trial count. A trial is
reserved under a PostgreSQL advisory lock, so the study ends with exactly `n_trials` finished
trials; a worker killed mid-trial stops beating, its trial is failed by the next worker that
looks (heartbeat) and queued again for whichever worker is free."""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tasks.core.errors import ConfigError
from tasks.core.heartbeats import every
from tasks.core.redact import redact

if TYPE_CHECKING:
    import optuna
    from sqlalchemy import Connection

HEARTBEAT_S = 10  # a running trial writes its heartbeat this often
GRACE_S = 40  # a trial silent this long is failed (its worker was killed) and queued again
MAX_RETRY = 3  # times one trial is queued again after its worker died
POLL_S = 1.0  # a worker with nothing to reserve looks again after this (trials still running)
# unless woken first: the worker that finds the study full says so on this PostgreSQL channel
CHANNEL = "mlops_study_{key:x}"
WORKER_ATTR = "worker"  # user attribute: which worker ran a trial


def require_storage(workers: int, storage: str | None, streamed: bool = False) -> None:
    """ConfigError (exit 2) when N > 1 workers have no shared PostgreSQL study to meet in, or
    the data is streamed (workers tune in-memory tables only)."""
    if workers <= 1:
        return
    if streamed:
        raise ConfigError(f"training.workers: {workers} tunes in-memory tables only; this data "
                          "is streamed in batches (docs/large-tables.md): set training.workers: 1")
    if not storage:
        raise ConfigError(f"training.workers: {workers} needs a shared study: set "
                          "MLOPS_OPTUNA_STORAGE to a PostgreSQL URL "
                          "(postgresql+psycopg://user@host:5432/optuna)")
    if not storage.startswith(("postgresql://", "postgresql+")):
        raise ConfigError(f"training.workers: {workers} needs MLOPS_OPTUNA_STORAGE on PostgreSQL "
                          f"(its advisory locks reserve trials), not {redact(storage)}")


def shared_storage(url: str, heartbeat_s: int = HEARTBEAT_S, grace_s: int = GRACE_S
                   ) -> optuna.storages.RDBStorage:
    """The study's storage with heartbeats: a dead worker's trial is failed and retried."""
    import optuna

    with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=heartbeat_s, grace_period=grace_s,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=MAX_RETRY))


def worker_sampler(seed: int, worker: int) -> optuna.samplers.BaseSampler:
    """TPE that treats running trials as bad (constant liar), so parallel workers spread out;
    each worker its own seed, else they would all start from the same random points.
    Multivariate: one read of the study per trial instead of one per parameter (with a liar,
    TPE reads the study again for every independent suggestion)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed + worker, constant_liar=True,
                                          multivariate=True)


class StudyLock:
    """A PostgreSQL advisory lock named after the study, taken for one transaction of its own
    connection: released at commit, or with the connection when the process dies. Workers
    with nothing to reserve wait on the study's channel (LISTEN) until one finds it full."""

    def __init__(self, storage: optuna.storages.RDBStorage, study_name: str) -> None:
        self.storage = storage
        self._key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big",
                                   signed=True)
        self._conn: Connection | None = None
        self._channel = CHANNEL.format(key=self._key & (2**64 - 1))
        self._listener: Any = None  # a psycopg connection, LISTENing once this worker waited

    @contextmanager
    def held(self) -> Iterator[None]:
        with self.storage.engine.begin() as conn:
            self._lock(conn)
            self._conn = conn
            try:
                yield
            finally:
                self._conn = None

    def _lock(self, conn: Connection) -> None:
        from sqlalchemy import text

        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": self._key})

    def wait(self, timeout_s: float) -> bool:
        """Until another worker `wake`s this study's workers (True), or timeout_s (False). The
        first call only starts listening and returns False at once: the caller looks again,
        so a wake-up sent before the LISTEN is not waited for."""
        if self.storage.engine.dialect.name != "postgresql":
            time.sleep(timeout_s)
            return False
        if self._listener is None:
            import psycopg

            url = self.storage.engine.url.set(drivername="postgresql")
            self._listener = psycopg.connect(url.render_as_string(hide_password=False),
                                             autocommit=True)
            self._listener.execute(f'LISTEN "{self._channel}"')
            return False
        return any(True for _ in self._listener.notifies(timeout=timeout_s, stop_after=1))

    def wake(self) -> None:
        """Wake the workers waiting on this study (sent when the transaction commits)."""
        if self.storage.engine.dialect.name != "postgresql":
            return
        from sqlalchemy import text

        with self.storage.engine.begin() as conn:
            conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": self._channel})

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def states(self, study_id: int) -> Counter[str]:
        """Trial states of the study, counted in one query on the lock's connection (Optuna's
        own reads fetch every trial whole: the lock would be held for far longer)."""
        from sqlalchemy import text

        assert self._conn is not None, "count trials under the lock"
        rows = self._conn.execute(text("SELECT state, count(*) FROM trials WHERE study_id = :s "
                                       "GROUP BY state"), {"s": study_id})
        return Counter({str(state): int(n) for state, n in rows})

    def waiting(self, study_id: int) -> list[int]:
        """Queued trials (a dead worker's, queued again), oldest first."""
        from sqlalchemy import text

        assert self._conn is not None, "read the queue under the lock"
        rows = self._conn.execute(text("SELECT trial_id FROM trials WHERE study_id = :s AND "
                                       "state = 'WAITING' ORDER BY number"), {"s": study_id})
        return [int(trial_id) for (trial_id,) in rows]


class _Reserver:
    """Takes this worker's next trial under the study's lock. The lock covers the count and the
    trial's row only (a handful of statements); sampling, the objective and `tell` run after
    it, so N workers hardly wait on each other."""

    def __init__(self, study: optuna.Study, lock: StudyLock, n_trials: int, worker: int
                 ) -> None:
        self.study, self.lock, self.n_trials, self.worker = study, lock, n_trials, worker
        self.storage = lock.storage
        self.study_id = self.storage.get_study_id_from_name(study.study_name)
        self.heartbeat_s = self.storage.get_heartbeat_interval()
        self.full = False
        self._stale_checked = -float("inf")

    def take(self) -> int | None:
        """The id of a trial reserved for this worker (RUNNING); None while every trial left is
        reserved by others, or when the study is full (`full`)."""
        from optuna.trial import TrialState

        with self.lock.held():
            self._fail_stale()
            states = self.lock.states(self.study_id)
            finished = states["COMPLETE"] + states["PRUNED"]
            self.full = finished >= self.n_trials
            if self.full:
                return None
            for trial_id in self.lock.waiting(self.study_id) if states["WAITING"] else []:
                if self.storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                    return trial_id  # its Trial reads the parameters fixed when it was queued
            if finished + states["RUNNING"] < self.n_trials:
                return self.storage.create_new_trial(self.study_id, self._new_trial())
        return None

    def _new_trial(self) -> optuna.trial.FrozenTrial:
        """A running trial that names its worker (one transaction, not two)."""
        from optuna.trial import FrozenTrial, TrialState

        return FrozenTrial(number=-1, state=TrialState.RUNNING, value=None,
                           datetime_start=datetime.now(), datetime_complete=None, params={},
                           distributions={}, user_attrs={WORKER_ATTR: self.worker},
                           system_attrs={}, intermediate_values={}, trial_id=-1)

    def _fail_stale(self) -> None:
        """Fail trials whose worker stopped beating (each is queued again), at most once per
        heartbeat interval: none goes stale faster than that."""
        import optuna

        if not self.heartbeat_s or time.monotonic() - self._stale_checked < self.heartbeat_s:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)
        self._stale_checked = time.monotonic()


@contextmanager
def _beating(storage: optuna.storages.RDBStorage, trial_id: int, every_s: int | None
             ) -> Iterator[None]:
    """The trial's heartbeat while it runs (what `Study.optimize` does for its own trials)."""
    if not every_s:
        yield
        return
    with every(every_s, lambda: storage.record_heartbeat(trial_id), f"heartbeat-{trial_id}"):
        yield


def _run_one(study: optuna.Study, trial_id: int, objective: Callable,
             storage: optuna.storages.RDBStorage, worker: int) -> optuna.trial.FrozenTrial:
    """One reserved trial run and told as `Study.optimize` would: heartbeat while it runs;
    pruned, failed (the error raised again once the trial is marked failed) or complete."""
    import optuna

    with _beating(storage, trial_id, storage.get_heartbeat_interval()):
        trial = optuna.Trial(study, trial_id)
        if trial.user_attrs.get(WORKER_ATTR) != worker:  # a dead worker's trial, queued again
            trial.set_user_attr(WORKER_ATTR, worker)
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            return study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        except (Exception, KeyboardInterrupt):
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
    return study.tell(trial, value)


def run_trials(study: optuna.Study, objective: Callable[[optuna.Trial], float], n_trials: int,
               lock: StudyLock, worker: int,
               callbacks: list[Callable] | None = None, poll_s: float = POLL_S) -> int:
    """Run trials until the study holds n_trials finished ones; how many this worker ran.
    Under the lock: fail stale trials (queued again), count finished + running + queued, and
    take a queued trial or a new one while that is below n_trials. With nothing to take, wait
    while other workers' trials run: one of them may die and its trial come back. The worker
    that finds the study full wakes the waiting ones, so all stop together."""
    reserver = _Reserver(study, lock, n_trials, worker)
    ran = 0
    try:
        while True:
            trial_id = reserver.take()
            if reserver.full:
                lock.wake()
                return ran
            if trial_id is None:
                lock.wait(poll_s)
                continue
            frozen = _run_one(study, trial_id, objective, lock.storage, worker)
            ran += 1
            for callback in callbacks or []:
                callback(study, frozen)
    finally:
        lock.close()


def finished_count(study: optuna.Study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def study_lineage(storage: str, study: optuna.Study, workers: int) -> dict[str, str]:
    """Tags of a version tuned by workers: where its study is, how many ran it and how many
    trials each finished, and the winning parameters (what `mlops reproduce` retrains)."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    per_worker = Counter(t.user_attrs.get(WORKER_ATTR) for t in done)
    return {
        "tuning_storage": redact(storage),
        "tuning_study": study.study_name,
        "tuning_workers": str(workers),
        "tuning_trials_per_worker": " ".join(f"{w}={per_worker.get(w, 0)}"
                                             for w in range(workers)),
        "tuning_failed_trials": str(len(study.get_trials(deepcopy=False,
                                                         states=(TrialState.FAIL,)))),
        "tuning_params": json.dumps(study.best_params, sort_keys=True),
    }


def winning_params(tags: dict[str, str]) -> dict | None:
    """The parameters a version tuned by workers won with; None for a sequential study."""
    return json.loads(tags["tuning_params"]) if tags.get("tuning_params") else None
