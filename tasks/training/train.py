"""Train stage: XGBoost tuned by Optuna (TPE, pruning, early stopping), deterministic per seed."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from prefect import task

from tasks.contracts.training import FeatureSpec, Splits, TrainResult, TrialSummary, ValidationReport
from tasks.core.config import ModelConfig, TrainingSpec
from tasks.core.tasktypes import TaskType, task_type
from tasks.training.batches import BatchTable, hash_split_rows
from tasks.training.matrices import stream_matrices

if TYPE_CHECKING:  # imported where they are used: a cached or reused run neither trains nor tunes
    import optuna
    import xgboost as xgb

Progress = Callable[[str], None]
TrialHook = Callable[[int, float | None, float], str]  # (trials done, value, best) -> a line
# histogram bins per feature: 64 instead of XGBoost's 256 builds histograms faster at the same
# quality here (benchmarks/tuning.py measures it against an unpruned 256-bin study)
MAX_BIN = 64


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
    return Splits(train=sorted(train.tolist()), valid=sorted(valid.tolist()),
                  test=sorted(test.tolist()))


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


def base_params(tt: TaskType, n_classes: int, device: str, seed: int) -> dict:
    # no nthread: XGBoost then uses every CPU, or OMP_NUM_THREADS when set (a runner shared by
    # several jobs sets it: oversubscribed OpenMP threads slow training 10x, the booster is the same)
    params = {"objective": tt.objective, "eval_metric": tt.eval_metric, "tree_method": "hist",
              "device": device, "seed": seed, "verbosity": 0,
              "max_bin": MAX_BIN}
    if tt.name == "multiclass":
        params["num_class"] = n_classes
    return params


def suggest_params(trial: optuna.Trial) -> dict:
    return {
        "max_depth": trial.suggest_int("max_depth", 3, 9),
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
        "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 20.0, log=True),
        "subsample": trial.suggest_float("subsample", 0.6, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
        "reg_alpha": trial.suggest_float("reg_alpha", 1e-3, 5.0, log=True),
    }


def _study(name: str, storage: str | None, seed: int) -> optuna.Study:
    import optuna

    return optuna.create_study(
        study_name=name,
        storage=storage,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=20),
        load_if_exists=True,
    )


def in_memory_matrices(df: pd.DataFrame, spec: FeatureSpec, splits: Splits
                       ) -> tuple[xgb.QuantileDMatrix, xgb.QuantileDMatrix]:
    """One quantile sketch for every trial (and the validation matrix binned by it)."""
    import xgboost as xgb

    X = spec.matrix(df)
    y = spec.encode_target(df[spec.target])
    dtrain = xgb.QuantileDMatrix(X.iloc[splits.train], y[splits.train], enable_categorical=True,
                                 max_bin=MAX_BIN)
    dvalid = xgb.QuantileDMatrix(X.iloc[splits.valid], y[splits.valid], ref=dtrain,
                                 enable_categorical=True, max_bin=MAX_BIN)
    return dtrain, dvalid


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
    import xgboost as xgb
    from optuna_integration import XGBoostPruningCallback

    started = time.perf_counter()
    tt = task_type(spec.task)
    dtrain, dvalid = matrices or in_memory_matrices(df, spec, splits)
    fixed = base_params(tt, len(spec.classes), device, training.seed)
    metric_key = f"valid-{tt.eval_metric}"

    def fit(params: dict, callbacks: list | None = None) -> xgb.Booster:
        return xgb.train({**fixed, **params}, dtrain, num_boost_round=training.max_rounds,
                         evals=[(dvalid, "valid")], verbose_eval=False,
                         early_stopping_rounds=training.early_stopping_rounds,
                         callbacks=callbacks)

    kept: dict[int, xgb.Booster] = {}  # the best trial's booster so far: no refit at the end

    def objective(trial: optuna.Trial) -> float:
        booster = fit(suggest_params(trial), [XGBoostPruningCallback(trial, metric_key)])
        trial.set_user_attr("best_iteration", booster.best_iteration)
        if not kept or booster.best_score < min(b.best_score for b in kept.values()):
            kept.clear()
            kept[trial.number] = booster
        return float(booster.best_score)

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        done = len(study.get_trials(deepcopy=False, states=_finished()))
        value = "pruned" if trial.value is None else f"{tt.eval_metric}={trial.value:.5f}"
        best = study.best_value if any(t.value is not None for t in study.trials) else float("nan")
        progress(on_trial(done, trial.value, best) if on_trial else
                 f"trial {done}/{training.n_trials}: {value} (best {best:.5f})")

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _study(study_name, storage, training.seed)
    remaining = training.n_trials - len(study.get_trials(deepcopy=False, states=_finished()))
    if remaining > 0:
        callbacks = [report]
        if storage:
            callbacks.append(optuna.study.MaxTrialsCallback(training.n_trials,
                                                            states=_finished()))
        study.optimize(objective, n_trials=remaining, timeout=training.timeout_s,
                       callbacks=callbacks)
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise RuntimeError("no Optuna trial completed; raise training.timeout_s or n_trials")

    # the same booster a refit would give (same params, data, seed); refit only when another
    # worker of a shared study ran the best trial
    best = kept.get(study.best_trial.number) or fit(study.best_params)
    final = best[: best.best_iteration + 1]
    raw = bytes(final.save_raw(raw_format="ubj"))
    trials = [TrialSummary(number=t.number, state=t.state.name, value=t.value)
              for t in study.trials]
    return TrainResult(
        booster_ubj=base64.b64encode(raw).decode(), feature_spec=spec, params=study.best_params,
        best_iteration=best.best_iteration, best_value=float(best.best_score),
        eval_metric=tt.eval_metric, device=device, trials=trials,
        duration_s=time.perf_counter() - started,
    )


def _finished() -> tuple[optuna.trial.TrialState, ...]:
    """The trial states that count against the budget."""
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED)


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
