"""One tuning worker: load → validate → run trials of the training run's study until it is full."""

from __future__ import annotations

from datetime import date

from prefect import flow

from tasks.core.config import load_config
from tasks.core.gpu import gpu_slot
from tasks.core.parameters import ModelName
from tasks.core.runnames import run_name
from tasks.core.settings import Settings
from tasks.training.data import load_data
from tasks.training.hpo import tune_worker
from tasks.training.train import feature_spec, splits_of
from tasks.training.validate import ensure_valid, validate


@flow(name="hpo-worker", flow_run_name=run_name("hpo"), log_prints=True)
def hpo_worker(model: ModelName, study_name: str, worker: int, device: str,
               as_of: date | None = None) -> int:
    """Run trials of a training run's shared study (started by it when training.workers > 1)
    until the study holds training.n_trials finished trials; how many ran here.

    Args:
        model: The model configured under configs/models whose study this is.
        study_name: The study in MLOPS_OPTUNA_STORAGE, created by the training run.
        worker: This worker's number (0 to workers - 1): its sampler seed and its trials' tag.
        device: The device the training run planned (cpu or cuda); part of its run key.
        as_of: The training run's as-of day: the same rows it read.
    """
    settings = Settings.from_env()
    cfg = load_config(model, settings.config_dir)
    data = load_data(spec=cfg.data, snowflake=settings.snowflake, as_of=as_of,
                     training=cfg.training, target=cfg.target)  # the rows the training run read
    validation = validate(df=data.frame, cfg=cfg, table=data.table)
    ensure_valid(validation)
    spec = feature_spec(data.frame, validation, cfg)
    splits = splits_of(data.frame, spec, cfg.training, cfg.data.key)
    with gpu_slot(device):
        return tune_worker(df=data.frame, spec=spec, splits=splits, training=cfg.training,
                           device=device, study_name=study_name,
                           storage=settings.optuna_storage, worker=worker)
