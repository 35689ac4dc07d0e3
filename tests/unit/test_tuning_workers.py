"""Tuning workers' pure parts: the storage they need, when the parent stops waiting, lineage."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import optuna
import pytest

from deployments.manifest import check_manifest, load_manifest
from deployments.pools import load_pools
from tasks.core.config import load_config
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
