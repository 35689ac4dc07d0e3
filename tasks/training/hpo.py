"""Tuning with workers (`training.workers: N`): the study created once, N `hpo-worker/<model>`
runs started on the model's pool, each running trials of that study until it holds
`n_trials`; the parent waits, refits the winner and records the study's lineage."""

from __future__ import annotations

import time
from datetime import date
from uuid import UUID

import pandas as pd

from tasks.contracts.training import FeatureSpec, RunPlan, Splits, TrainResult
from tasks.core.config import ModelConfig, TrainingSpec
from tasks.core.errors import ConfigError
from tasks.core.steps import step
from tasks.core.synced import synced
from tasks.core.tasktypes import task_type
from tasks.training.boosting import (
    booster_fit,
    fit_params,
    in_memory_matrices,
    open_study,
    suggest_params,
)
from tasks.training.workers import (
    StudyLock,
    finished_count,
    require_storage,
    run_trials,
    shared_storage,
    study_lineage,
    worker_sampler,
)

WORKER_DEPLOYMENT = "hpo-worker/hpo-{model}"  # prefect.yaml (deployments/manifest.py checks it)
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


@step("create-study")
def create_study(study_name: str, storage: str, training: TrainingSpec) -> str:
    """Create the shared study before any worker starts (workers creating it at once race)."""
    open_study(study_name, shared_storage(storage), training.seed)
    return study_name


def tune_as_worker(df: pd.DataFrame, spec: FeatureSpec, splits: Splits, training: TrainingSpec,
                   device: str, study_name: str, storage: str, worker: int,
                   progress=print) -> int:
    """Run trials of the shared study until it holds n_trials finished ones; how many ran here."""
    import optuna
    from optuna_integration import XGBoostPruningCallback

    fit = booster_fit(in_memory_matrices(df, spec, splits), spec, training, device)
    metric_key = f"valid-{task_type(spec.task).eval_metric}"

    def objective(trial: optuna.Trial) -> float:
        booster = fit(suggest_params(trial), [XGBoostPruningCallback(trial, metric_key)])
        trial.set_user_attr("best_iteration", booster.best_iteration)
        return float(booster.best_score)

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        value = "pruned" if trial.value is None else f"{trial.value:.5f}"
        progress(f"worker {worker}: trial {trial.number} {value} "
                 f"({finished_count(study)}/{training.n_trials} in the study)")

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = shared_storage(storage)
    study = open_study(study_name, store, training.seed, worker_sampler(training.seed, worker))
    return run_trials(study, objective, training.n_trials, StudyLock(store, study_name), worker,
                      callbacks=[report])


@step("tune-worker")
def tune_worker(df: pd.DataFrame | None, spec: FeatureSpec, splits: Splits | None,
                training: TrainingSpec, device: str, study_name: str, storage: str | None,
                worker: int) -> int:
    """One worker's share of the study (never cached: the study decides what is left)."""
    from prefect.logging import get_run_logger

    require_storage(training.workers, storage, streamed=df is None)
    assert df is not None and splits is not None and storage  # require_storage said so
    logger = get_run_logger()
    ran = tune_as_worker(df, spec, splits, training, device, study_name, storage, worker,
                         progress=logger.info)
    logger.info("worker %d ran %d trial(s) of %s", worker, ran, study_name)
    return ran


@step("start-workers")
def start_workers(model: str, study_name: str, workers: int, device: str,
                  as_of: date | None) -> list[str]:
    """Start `workers` runs of hpo-worker/<model> and return at once (their ids)."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.runtime import flow_run

    name = WORKER_DEPLOYMENT.format(model=model)
    ids = []
    for worker in range(workers):
        params = {"model": model, "study_name": study_name, "worker": worker, "device": device,
                  "as_of": as_of.isoformat() if as_of else None}
        try:
            run = synced(run_deployment(name=name, parameters=params, timeout=0,
                                        as_subflow=False,
                                        tags=[f"model:{model}", f"study:{study_name}",
                                              f"training-run:{flow_run.get_id()}"]))
        except ObjectNotFound:
            raise ConfigError(f"no deployment {name} on the Prefect server: training.workers > 1 "
                              "starts its runs (run `prefect --no-prompt deploy --all`)") from None
        ids.append(str(run.id))
    return ids


def workers_done(states: list[str], finished: int, n_trials: int, study_done_since: float | None,
                 now: float, grace_s: float) -> bool:
    """Every worker run is final; or the study is full and the rest had grace_s to end (a
    killed worker's run may never say so)."""
    if all(s in FINAL for s in states):
        return True
    return finished >= n_trials and study_done_since is not None and now - study_done_since > grace_s


@step("wait-for-workers")
def wait_for_workers(run_ids: list[str], study_name: str, storage: str, n_trials: int,
                     poll_s: float = 5.0, grace_s: float = 120.0) -> list[str]:
    """Wait until the worker runs end (their final state names, in order)."""
    import optuna
    from prefect.client.orchestration import get_client
    from prefect.logging import get_run_logger

    study = optuna.load_study(study_name=study_name, storage=storage)
    full_since = None
    with get_client(sync_client=True) as client:
        while True:
            states = [(client.read_flow_run(UUID(r)).state_type or "PENDING") for r in run_ids]
            names = [getattr(s, "value", str(s)) for s in states]
            finished = finished_count(study)
            if finished >= n_trials and full_since is None:
                full_since = time.monotonic()
            if workers_done(names, finished, n_trials, full_since, time.monotonic(), grace_s):
                break
            time.sleep(poll_s)
    if any(n not in FINAL for n in names):
        get_run_logger().warning("study %s is complete; worker run(s) %s not final yet", study_name,
                                 [r for r, n in zip(run_ids, names, strict=True) if n not in FINAL])
    if finished < n_trials:
        raise RuntimeError(f"study {study_name} holds {finished} of {n_trials} finished trials and "
                           f"its worker runs ended ({', '.join(names)})")
    return names


@step("best-of-study")
def best_of_study(df: pd.DataFrame, spec: FeatureSpec, splits: Splits, training: TrainingSpec,
                  device: str, study_name: str, storage: str) -> TrainResult:
    """The winner of the shared study refit here (the same booster its trial trained)."""
    return refit_best(df, spec, splits, training, device, study_name, storage)


def refit_best(df: pd.DataFrame, spec: FeatureSpec, splits: Splits, training: TrainingSpec,
               device: str, study_name: str, storage: str) -> TrainResult:
    import optuna

    study = optuna.load_study(study_name=study_name, storage=storage)
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise RuntimeError(f"no trial of study {study_name} completed")
    return fit_params(df, spec, splits, training, device, study.best_params, study.trials)


@step("tuning-lineage")
def with_tuning_lineage(plan: RunPlan, storage: str, workers: int) -> RunPlan:
    """The plan with the study's lineage in its tags (they go on the version and its card)."""
    import optuna

    study = optuna.load_study(study_name=plan.study_name, storage=storage)
    return plan.model_copy(update={"tags": {**plan.tags,
                                            **study_lineage(storage, study, workers)}})


def tune_with_workers(cfg: ModelConfig, plan: RunPlan, df: pd.DataFrame, spec: FeatureSpec,
                      splits: Splits, storage: str | None, as_of: date | None) -> TrainResult:
    """The study created once, hpo-worker runs started and waited for, the winner refit."""
    from tasks.core.gpu import gpu_slot

    if storage is None:  # the config check says so before the flow starts; never tune blind
        raise ConfigError(f"training.workers: {cfg.training.workers} needs MLOPS_OPTUNA_STORAGE")

    create_study(study_name=plan.study_name, storage=storage, training=cfg.training)
    runs = start_workers(model=cfg.name, study_name=plan.study_name,
                         workers=cfg.training.workers, device=plan.device, as_of=as_of)
    wait_for_workers(run_ids=runs, study_name=plan.study_name, storage=storage,
                     n_trials=cfg.training.n_trials)
    with gpu_slot(plan.device):  # the workers each held one while they trained
        return best_of_study(df=df, spec=spec, splits=splits, training=cfg.training,
                             device=plan.device, study_name=plan.study_name, storage=storage)
