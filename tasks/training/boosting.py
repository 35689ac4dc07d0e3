"""XGBoost under Optuna, the parts every tuning shares (one process or many workers): the fixed
parameters, the search space, the study, the matrices, the early-stopped fit and its result."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pandas as pd

from tasks.contracts.training import FeatureSpec, Splits, TrainResult, TrialSummary
from tasks.core.config import TrainingSpec
from tasks.core.tasktypes import TaskType, task_type

if TYPE_CHECKING:
    import optuna
    import xgboost as xgb

# histogram bins per feature: 64 instead of XGBoost's 256 builds histograms faster at the same
# quality here (benchmarks/tuning.py measures it against an unpruned 256-bin study)
MAX_BIN = 64


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


def open_study(name: str, storage: str | optuna.storages.BaseStorage | None, seed: int,
               sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """The tuning study (created, or joined when it exists): TPE and a median pruner."""
    import optuna

    return optuna.create_study(
        study_name=name,
        storage=storage,
        direction="minimize",
        sampler=sampler or optuna.samplers.TPESampler(seed=seed),
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


Fit = Callable[..., "xgb.Booster"]  # (params, callbacks=None) -> booster, early-stopped


def booster_fit(matrices: tuple[xgb.DMatrix, xgb.DMatrix], spec: FeatureSpec,
                training: TrainingSpec, device: str) -> Fit:
    """Training on the train matrix, early-stopped on the validation one, for given parameters."""
    import xgboost as xgb

    dtrain, dvalid = matrices
    tt = task_type(spec.task)
    fixed = base_params(tt, len(spec.classes), device, training.seed)

    def fit(params: dict, callbacks: list | None = None) -> xgb.Booster:
        return xgb.train({**fixed, **params}, dtrain, num_boost_round=training.max_rounds,
                         evals=[(dvalid, "valid")], verbose_eval=False,
                         early_stopping_rounds=training.early_stopping_rounds,
                         callbacks=callbacks)

    return fit


def train_result(best: xgb.Booster, spec: FeatureSpec, params: dict, device: str,
                 trials: list[optuna.trial.FrozenTrial], started: float) -> TrainResult:
    """The result of a tuning: the best booster cut at its best iteration, the study's trials."""
    final = best[: best.best_iteration + 1]
    raw = bytes(final.save_raw(raw_format="ubj"))
    return TrainResult(
        booster_ubj=base64.b64encode(raw).decode(), feature_spec=spec, params=params,
        best_iteration=best.best_iteration, best_value=float(best.best_score),
        eval_metric=task_type(spec.task).eval_metric, device=device,
        trials=[TrialSummary(number=t.number, state=t.state.name, value=t.value) for t in trials],
        duration_s=time.perf_counter() - started,
    )


def finished_states() -> tuple[optuna.trial.TrialState, ...]:
    """The trial states that count against the budget."""
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED)


def fit_params(df: pd.DataFrame, spec: FeatureSpec, splits: Splits, training: TrainingSpec,
               device: str, params: dict, trials: list | None = None) -> TrainResult:
    """The booster of given parameters (a study's winner), as its trial trained it."""
    started = time.perf_counter()
    fit = booster_fit(in_memory_matrices(df, spec, splits), spec, training, device)
    return train_result(fit(params), spec, params, device, trials or [], started)
