"""Train stage: XGBoost tuned by Optuna (TPE, pruning, early stopping), deterministic per seed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from prefect import task

from tasks.contracts.training import FeatureSpec, Splits, TrainResult, ValidationReport
from tasks.core.config import ModelConfig, TrainingSpec
from tasks.core.tasktypes import TaskType, task_type
from tasks.training.batches import BatchTable, hash_split_rows
from tasks.training.boosting import (
    MAX_BIN,
    booster_fit,
    finished_states,
    in_memory_matrices,
    open_study,
    suggest_params,
    train_result,
)
from tasks.training.matrices import stream_matrices

if TYPE_CHECKING:  # imported where they are used: a cached or reused run neither trains nor tunes
    import optuna
    import xgboost as xgb

Progress = Callable[[str], None]
TrialHook = Callable[[int, float | None, float], str]  # (trials done, value, best) -> a line


def feature_spec(df: pd.DataFrame | None, report: ValidationReport, cfg: ModelConfig
                 ) -> FeatureSpec:
    """The features, their categories (from df, or as validation counted them over a streamed
    table) and the classes."""
    categories = {
        col: sorted(df[col].dropna().astype(str).unique().tolist()) if df is not None
        else report.categories[col] for col in report.categorical
    }
    return FeatureSpec(task=cfg.task, target=cfg.target, features=report.features,
                       categories=categories, classes=report.classes)


def split_rows(y: np.ndarray, spec: TrainingSpec, tt: TaskType) -> Splits:
    """Deterministic train/validation/test split, stratified for classification."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    strat = y if tt.stratify else None
    rest, test = train_test_split(idx, test_size=spec.test_size, random_state=spec.seed,
                                  stratify=strat)
    strat_rest = y[rest] if tt.stratify else None
    train, valid = train_test_split(rest, test_size=spec.validation_size,
                                    random_state=spec.seed, stratify=strat_rest)
    return Splits(train=np.sort(train), valid=np.sort(valid), test=np.sort(test))


def splits_of(df: pd.DataFrame | None, spec: FeatureSpec, training: TrainingSpec,
              key: str | None = None) -> Splits | None:
    """The in-memory split of df (stratified, or hashed per row as a streamed table's is);
    None for a streamed table (each row's split is hashed as it is read)."""
    if df is None:
        return None
    if training.split in ("hash", "hash-stratified"):
        stratify = spec.target if training.split == "hash-stratified" else None
        train, valid, test = hash_split_rows(df, training.seed, training.test_size,
                                             training.validation_size, key, stratify)
        return Splits(train=train, valid=valid, test=test)
    return split_rows(spec.encode_target(df[spec.target]), training, task_type(spec.task))


def train_model(
    df: pd.DataFrame | None,
    spec: FeatureSpec,
    splits: Splits | None,
    training: TrainingSpec,
    device: str,
    study_name: str,
    storage: str | None = None,
    progress: Progress = print,
    on_trial: TrialHook | None = None,
    matrices: tuple[xgb.DMatrix, xgb.DMatrix] | None = None,
) -> TrainResult:
    """Tune on train/validation, refit the best parameters, keep the booster as UBJSON.
    After each finished trial `progress` gets a line: `on_trial`'s (done, value, best) when
    given (elapsed time and ETA), else the trial count and scores. The matrices are built from
    df and splits unless given (built from a streamed table)."""
    import optuna
    from optuna_integration import XGBoostPruningCallback

    started = time.perf_counter()
    tt = task_type(spec.task)
    if matrices is None:
        if df is None or splits is None:
            raise ValueError("train_model needs df and splits, or the matrices")
        matrices = in_memory_matrices(df, spec, splits)
    fit = booster_fit(matrices, spec, training, device)
    metric_key = f"valid-{tt.eval_metric}"
    kept: dict[int, xgb.Booster] = {}  # the best trial's booster so far: no refit at the end

    def objective(trial: optuna.Trial) -> float:
        booster = fit(suggest_params(trial), [XGBoostPruningCallback(trial, metric_key)])
        trial.set_user_attr("best_iteration", booster.best_iteration)
        if not kept or booster.best_score < min(b.best_score for b in kept.values()):
            kept.clear()
            kept[trial.number] = booster
        return float(booster.best_score)

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        done = len(study.get_trials(deepcopy=False, states=finished_states()))
        value = "pruned" if trial.value is None else f"{tt.eval_metric}={trial.value:.5f}"
        best = study.best_value if any(t.value is not None for t in study.trials) else float("nan")
        progress(on_trial(done, trial.value, best) if on_trial else
                 f"trial {done}/{training.n_trials}: {value} (best {best:.5f})")

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(study_name, storage, training.seed)
    remaining = training.n_trials - len(study.get_trials(deepcopy=False, states=finished_states()))
    if remaining > 0:
        callbacks = [report]
        if storage:
            callbacks.append(optuna.study.MaxTrialsCallback(training.n_trials,
                                                            states=finished_states()))
        study.optimize(objective, n_trials=remaining, timeout=training.timeout_s,
                       callbacks=callbacks)
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise RuntimeError("no Optuna trial completed; raise training.timeout_s or n_trials")

    # the same booster a refit would give (same params, data, seed); refit only when another
    # worker of a shared study ran the best trial
    best = kept.get(study.best_trial.number) or fit(study.best_params)
    return train_result(best, spec, study.best_params, device, study.trials, started)


def _train_cache_key(context, parameters) -> str:
    """The study name carries the run key (data fingerprint, config, code, device)."""
    return f"train-{parameters['study_name']}"


@task(name="train", cache_key_fn=_train_cache_key, persist_result=True, result_serializer="json")
def train(df: pd.DataFrame, spec: FeatureSpec, splits: Splits, training: TrainingSpec,
          device: str, study_name: str, storage: str | None) -> TrainResult:
    """Cached by run key (data fingerprint, config, code, device): a re-run reuses the booster."""
    from prefect.logging import get_run_logger

    logger = get_run_logger()
    logger.info("training on %s: %d rows, %d features, %d trials", device, len(splits.train),
                len(spec.features), training.n_trials)
    return _with_progress(logger, study_name, spec, training, lambda on_trial: train_model(
        df, spec, splits, training, device, study_name, storage, progress=logger.info,
        on_trial=on_trial))


def _with_progress(logger, study_name: str, spec: FeatureSpec, training: TrainingSpec,
                   tune: Callable[[TrialHook], TrainResult]) -> TrainResult:
    """Tune with each trial's progress line and the model's progress artifact, closed after."""
    from tasks.reports.progress import tuning_progress

    model = study_name.rsplit("-", 1)[0]  # planning names studies <model>-<run key>
    tracker, on_trial = tuning_progress(model, task_type(spec.task).eval_metric,
                                        training.n_trials, logger.warning)
    try:
        return tune(on_trial)
    finally:
        tracker.close()


@task(name="train", cache_key_fn=_train_cache_key, persist_result=True, result_serializer="json")
def train_streamed(table: BatchTable, spec: FeatureSpec, training: TrainingSpec, device: str,
                   study_name: str, storage: str | None, cache_root: Path) -> TrainResult:
    """The train step on a table streamed in batches: matrices built batch by batch (in-core
    compressed, or external memory above the budget), then the same tuning."""
    from prefect.logging import get_run_logger

    logger = get_run_logger()
    with stream_matrices(table, spec, training, MAX_BIN, cache_root,
                         progress=logger.info) as matrices:
        logger.info("training on %s: %d rows, %d features, %d trials", device,
                    matrices[0].num_row(), len(spec.features), training.n_trials)
        return _with_progress(logger, study_name, spec, training, lambda on_trial: train_model(
            None, spec, None, training, device, study_name, storage, progress=logger.info,
            on_trial=on_trial, matrices=matrices))


logging.getLogger("optuna").setLevel(logging.WARNING)
