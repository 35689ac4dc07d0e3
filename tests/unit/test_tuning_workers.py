"""Tuning workers' pure parts: the storage they need, when the parent stops waiting, lineage."""

from __future__ import annotations

import json

import optuna
import pytest

from tasks.core.errors import ConfigError
from tasks.training.hpo import workers_done
from tasks.training.workers import require_storage, study_lineage, winning_params


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
