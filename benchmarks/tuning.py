"""Time to quality of tuning, measured side by side in one run.

  tuned fraud (`train_model` as shipped: median pruner after a warm-up, early stopping, 64
  `hist` bins, one QuantileDMatrix for every trial, the best trial's booster kept instead of a
  refit) vs an unpruned 20-trial study (same search space, seed, data and early stopping;
  XGBoost's default 256 bins; the best parameters refit at the end, as training did before).

  quality: test ROC AUC of the tuned model within 0.002 of the unpruned study's best.
  time:    tuned / unpruned wall time.                                         goal <= 0.5x

Both sides run in this process on the same splits, alternating when --repeats > 1 (medians are
reported). Absolute seconds on a shared 2-core machine mean little: read the ratio.

Usage: python benchmarks/tuning.py [--repeats N] [--trials N] [--rows N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
AUC_TOLERANCE = 0.002
GOAL = 0.5


def prepare(rows: int, trials: int):
    from tasks.core.config import load_config
    from tasks.core.tasktypes import task_type
    from tasks.training.data import load_dataset
    from tasks.training.train import feature_spec, split_rows
    from tasks.training.validate import ensure_valid, validate_frame

    cfg = load_config("fraud", REPO / "configs" / "models")
    cfg = cfg.model_copy(update={
        "training": cfg.training.model_copy(update={"n_trials": trials}),
        "data": cfg.data.model_copy(update={"rows": rows})})
    frame = load_dataset(cfg.data).frame
    report = ensure_valid(validate_frame(frame, cfg))
    spec = feature_spec(frame, report, cfg)
    splits = split_rows(spec.encode_target(frame[cfg.target]), cfg.training, task_type(cfg.task))
    return cfg, frame, spec, splits


def unpruned(cfg, frame, spec, splits):
    """The reference: a plain TPE study, no pruner, 256 bins, refit of the best parameters."""
    import optuna
    import xgboost as xgb

    from tasks.core.tasktypes import task_type
    from tasks.training.boosting import base_params, suggest_params

    t = cfg.training
    X, y = spec.matrix(frame), spec.encode_target(frame[spec.target])
    fixed = {**base_params(task_type(cfg.task), len(spec.classes), "cpu", t.seed), "max_bin": 256}
    dtrain = xgb.QuantileDMatrix(X.iloc[splits.train], y[splits.train], enable_categorical=True,
                                 max_bin=256)
    dvalid = xgb.QuantileDMatrix(X.iloc[splits.valid], y[splits.valid], ref=dtrain,
                                 enable_categorical=True)

    def fit(params):
        return xgb.train({**fixed, **params}, dtrain, num_boost_round=t.max_rounds,
                         evals=[(dvalid, "valid")], verbose_eval=False,
                         early_stopping_rounds=t.early_stopping_rounds)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=t.seed),
                                pruner=optuna.pruners.NopPruner())
    study.optimize(lambda trial: float(fit(suggest_params(trial)).best_score),
                   n_trials=t.n_trials)
    best = fit(study.best_params)
    return best[: best.best_iteration + 1], len(study.trials)


def shipped(cfg, frame, spec, splits):
    from tasks.training.train import train_model

    result = train_model(frame, spec, splits, cfg.training, "cpu", f"bench-{time.time_ns()}",
                         progress=lambda _: None)
    return result.booster(), result.n_pruned


def test_auc(booster, frame, spec, splits) -> float:
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score

    X = spec.matrix(frame).iloc[splits.test]
    y = spec.encode_target(frame[spec.target])[splits.test]
    return float(roc_auc_score(y, booster.predict(xgb.DMatrix(X, enable_categorical=True))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    cfg, frame, spec, splits = prepare(args.rows, args.trials)
    times: dict[str, list[float]] = {"unpruned": [], "tuned": []}
    aucs: dict[str, float] = {}
    pruned = 0
    for round_ in range(args.repeats):
        order = ("unpruned", "tuned") if round_ % 2 == 0 else ("tuned", "unpruned")
        for side in order:
            start = time.perf_counter()
            booster, extra = (unpruned if side == "unpruned" else shipped)(cfg, frame, spec,
                                                                         splits)
            times[side].append(time.perf_counter() - start)
            aucs[side] = test_auc(booster, frame, spec, splits)
            if side == "tuned":
                pruned = extra
            print(f"round {round_ + 1} {side}: {times[side][-1]:.1f} s, test ROC AUC "
                  f"{aucs[side]:.4f}", flush=True)
        print(f"round {round_ + 1} ratio: {times['tuned'][-1] / times['unpruned'][-1]:.2f}x",
              flush=True)
    ratio = statistics.median(times["tuned"]) / statistics.median(times["unpruned"])
    gap = aucs["unpruned"] - aucs["tuned"]
    quality_ok = gap <= AUC_TOLERANCE
    print(f"\ntime to quality: tuned/unpruned = {ratio:.2f}x (goal <= {GOAL}x: "
          f"{'met' if ratio <= GOAL else 'MISSED'}); {pruned} of {args.trials} trials pruned")
    print(f"quality: tuned ROC AUC {aucs['tuned']:.4f} vs unpruned best {aucs['unpruned']:.4f} "
          f"(gap {gap:+.4f}, allowed {AUC_TOLERANCE}: {'met' if quality_ok else 'MISSED'})")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tuning.json").write_text(json.dumps(
        {"ratio": ratio, "times": times, "auc": aucs, "pruned": pruned, "trials": args.trials,
         "rows": args.rows, "goal": GOAL, "quality_ok": quality_ok}, indent=2))


if __name__ == "__main__":
    main()
