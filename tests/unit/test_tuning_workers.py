"""Tuning workers' pure parts: the storage they need, when the parent stops waiting, lineage;
the trial loop on SQLite (one worker, the lock statement left out: PostgreSQL's advisory lock is
what the integration and end-to-end tests share)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import optuna
import pytest
from sqlalchemy import event

from deployments.manifest import check_manifest, load_manifest
from deployments.pools import load_pools
from tasks.core.config import load_config
from tasks.core.errors import ConfigError
from tasks.training.hpo import workers_done
from tasks.training.workers import (
    StudyLock,
    require_storage,
    run_trials,
    study_lineage,
    winning_params,
    worker_sampler,
)


def test_one_worker_needs_no_storage():
    require_storage(1, None)


@pytest.mark.parametrize("storage", [None, ""])
def test_several_workers_without_storage_is_one_config_line(storage):
    with pytest.raises(ConfigError, match="MLOPS_OPTUNA_STORAGE") as err:
        require_storage(3, storage)
    assert "\n" not in str(err.value)


def test_several_workers_refuse_a_storage_other_than_postgresql_without_its_password():
    with pytest.raises(ConfigError, match=r"PostgreSQL.*mysql://\*\*\*@db/optuna"):
        require_storage(2, "mysql://user:secret@db/optuna")


def test_postgresql_storage_is_accepted():
    require_storage(4, "postgresql+psycopg://postgres@127.0.0.1:5432/optuna")


def test_the_parent_waits_for_every_worker_run_to_end():
    assert workers_done(["COMPLETED", "CRASHED"], 3, 9, None, 0.0, 60)
    assert not workers_done(["COMPLETED", "RUNNING"], 8, 9, None, 0.0, 60)


def test_a_worker_run_that_never_ends_is_not_waited_for_past_the_grace():
    assert not workers_done(["COMPLETED", "RUNNING"], 9, 9, 100.0, 130.0, 60)
    assert workers_done(["COMPLETED", "RUNNING"], 9, 9, 100.0, 161.0, 60)


def test_lineage_names_the_study_workers_trials_each_and_the_winner():
    study = optuna.create_study(study_name="fraud-abc", direction="minimize")
    for worker, x in [(0, 1.0), (1, 0.5), (0, 2.0)]:
        trial = study.ask()
        trial.set_user_attr("worker", worker)
        study.tell(trial, trial.suggest_float("x", 0, 3) * 0 + x)
    tags = study_lineage("postgresql+psycopg://u:pw@db:5432/optuna", study, 3)
    assert tags["tuning_storage"] == "postgresql+psycopg://***@db:5432/optuna"
    assert tags["tuning_study"] == "fraud-abc"
    assert tags["tuning_workers"] == "3"
    assert tags["tuning_trials_per_worker"] == "0=2 1=1 2=0"
    assert winning_params(tags) == study.best_params == json.loads(tags["tuning_params"])
    assert winning_params({}) is None


REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "models"


def test_every_model_has_a_tuning_worker_deployment_capped_at_its_pool_s_runners():
    pools = load_pools()
    entries = {d.full_name: d for d in load_manifest(REPO / "prefect.yaml")}
    for model in ("fraud", "damage", "settlement"):
        cfg = load_config(model, CONFIGS)
        entry = entries[f"hpo-worker/hpo-{model}"]
        assert entry.work_pool == cfg.training.work_pool
        assert entry.concurrency == (pools[entry.work_pool].runners, "ENQUEUE")
    assert check_manifest(REPO / "prefect.yaml", CONFIGS) == []


def test_check_deployments_flags_tuning_workers_beyond_the_pool_s_runners(tmp_path):
    text = (REPO / "prefect.yaml").read_text()
    old = "concurrency_limit: {limit: 1, collision_strategy: ENQUEUE}   # gpu-runners: 1 runner"
    assert old in text
    manifest = tmp_path / "prefect.yaml"
    manifest.write_text(text.replace(old, "concurrency_limit: {limit: 3, collision_strategy: "
                                          "ENQUEUE}"))
    assert check_manifest(manifest, CONFIGS) == [
        f"{manifest}: deployment hpo-worker/hpo-damage needs concurrency_limit: {{limit: 1, "
        "collision_strategy: ENQUEUE} (gpu-runners has 1 runner(s) in "
        "deployments/pools.yaml; has limit 3, ENQUEUE)"]


def test_one_worker_keeps_the_config_hash_of_configs_written_before_workers():
    cfg = load_config("fraud", CONFIGS)
    before = cfg.model_dump(mode="json")
    del before["training"]["workers"]
    assert cfg.config_hash() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()
                                               ).hexdigest()
    three = cfg.model_copy(update={"training": cfg.training.model_copy(update={"workers": 3})})
    assert three.config_hash() != cfg.config_hash()  # another run key: not reproducible bit for bit


def test_several_workers_refuse_streamed_data_in_one_line():
    with pytest.raises(ConfigError, match="in-memory tables only") as err:
        require_storage(2, "postgresql://postgres@127.0.0.1/optuna", streamed=True)
    assert "\n" not in str(err.value)
    require_storage(1, None, streamed=True)


class SqliteLock(StudyLock):
    """The study lock with its SQL (count, queue) on SQLite and no advisory lock: one worker."""

    def _lock(self, conn) -> None:
        pass


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory):
    """One SQLite storage with heartbeats for the loop's tests (creating one takes seconds)."""
    import warnings

    path = tmp_path_factory.mktemp("optuna") / "optuna.db"
    with warnings.catch_warnings():  # heartbeats are "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        store = optuna.storages.RDBStorage(f"sqlite:///{path}", heartbeat_interval=60,
                                           grace_period=120)
    event.listen(store.engine, "connect",  # no fsync per commit (about 20 per trial)
                 lambda conn, _: conn.execute("PRAGMA synchronous = OFF"))
    store.engine.dispose()
    return store


def _worker_study(store, name: str, seed: int = 7):
    study = optuna.create_study(study_name=name, storage=store, sampler=worker_sampler(seed, 0))
    return study, SqliteLock(store, name)


def _objective(trial: optuna.Trial) -> float:
    return (trial.suggest_float("x", -3, 3) - 1) ** 2 + trial.suggest_int("k", 1, 9) / 10


N_LOOP = 14  # past TPE's 10 random start-up trials: the sampler must see every finished trial


def test_one_worker_samples_what_optimize_samples_with_the_same_seed(sqlite_store):
    """run_trials builds and tells its trials itself (the lock covers only the trial's row):
    with one worker it must give the very trials `Study.optimize` gives."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, lock = _worker_study(sqlite_store, "same-seed")
    assert run_trials(study, _objective, N_LOOP, lock, worker=0) == N_LOOP
    reference = optuna.create_study(sampler=worker_sampler(7, 0))
    reference.optimize(_objective, n_trials=N_LOOP)
    assert [t.params for t in study.trials] == [t.params for t in reference.trials]
    assert [t.value for t in study.trials] == [t.value for t in reference.trials]
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE}
    assert {t.user_attrs["worker"] for t in study.trials} == {0}
    assert run_trials(study, _objective, N_LOOP, lock, worker=1) == 0  # full: nothing to run


def test_a_queued_trial_is_run_first_with_its_parameters_and_counts_towards_n(sqlite_store):
    study, lock = _worker_study(sqlite_store, "queued")
    study.enqueue_trial({"x": 2.5, "k": 4})  # what a dead worker's retried trial looks like
    seen: list[optuna.trial.FrozenTrial] = []
    assert run_trials(study, _objective, 3, lock, worker=2,
                      callbacks=[lambda s, t: seen.append(t)]) == 3
    assert len(study.trials) == 3 and study.trials[0].params == {"x": 2.5, "k": 4}
    assert [t.number for t in seen] == [0, 1, 2]
    assert [t.state for t in seen] == [optuna.trial.TrialState.COMPLETE] * 3
    assert seen[0].value == pytest.approx(1.5**2 + 0.4) and seen[0].user_attrs["worker"] == 2


def test_pruned_trials_count_as_finished_and_a_failing_objective_stops_the_worker(sqlite_store):
    study, lock = _worker_study(sqlite_store, "pruned-failed")

    def objective(trial: optuna.Trial) -> float:
        x = _objective(trial)
        if trial.number == 1:
            raise optuna.TrialPruned()
        if trial.number == 3:
            raise ValueError("bad data")
        return x

    with pytest.raises(ValueError, match="bad data"):
        run_trials(study, objective, 5, lock, worker=0)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "PRUNED", "COMPLETE", "FAIL"]  # nothing left RUNNING
    assert run_trials(study, _objective, 5, lock, worker=0) == 2  # 2 more: 5 finished
    assert [t.state.name for t in study.trials].count("FAIL") == 1
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials) == 5
