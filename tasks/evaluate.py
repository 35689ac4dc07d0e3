"""Evaluate stage: held-out metrics, metrics per slice, plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel
from sklearn import metrics as skm

from tasks.core.tasktypes import TaskType, compute_metrics, task_type
from tasks.train import FeatureSpec, TrainResult


class EvalReport(BaseModel):
    primary_metric: str
    metrics: dict[str, float]
    slices: dict[str, dict[str, dict[str, float]]]
    test_rows: int
    plots: list[str] = []

    def slice_table(self, metric: str) -> list[tuple[str, str, float, int]]:
        return [(col, value, m[metric], int(m["rows"]))
                for col, values in self.slices.items() for value, m in values.items()
                if metric in m]


def booster_scores(booster: xgb.Booster, spec: FeatureSpec, frame: pd.DataFrame) -> np.ndarray:
    matrix = xgb.DMatrix(spec.matrix(frame), enable_categorical=True)
    return booster.predict(matrix)


def scores_from_predictions(pred: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """Map a pyfunc prediction frame back to scores in this spec's class order."""
    if spec.task == "regression":
        return pred["prediction"].to_numpy(dtype=float)
    if spec.task == "binary":
        return pred["probability"].to_numpy(dtype=float)
    cols = [f"probability_{c}" for c in spec.classes]
    missing = [c for c in cols if c not in pred.columns]
    if missing:
        raise ValueError(f"champion predicts other classes (missing {', '.join(missing)})")
    return pred[cols].to_numpy(dtype=float)


def slice_metrics(tt: TaskType, y: np.ndarray, scores: np.ndarray, frame: pd.DataFrame,
                  slices: list[str], min_rows: int) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for col in slices:
        values = frame[col].astype("string").fillna("<null>").to_numpy()
        per: dict[str, dict[str, float]] = {}
        for value in sorted(set(values)):
            mask = values == value
            if mask.sum() < min_rows:
                continue
            per[str(value)] = {**compute_metrics(tt, y[mask], scores[mask]),
                               "rows": float(mask.sum())}
        out[col] = per
    return out


def evaluate_scores(spec: FeatureSpec, frame: pd.DataFrame, scores: np.ndarray,
                    slices: list[str], min_rows: int) -> EvalReport:
    tt = task_type(spec.task)
    y = spec.encode_target(frame[spec.target])
    return EvalReport(primary_metric=tt.primary_metric,
                      metrics=compute_metrics(tt, y, scores),
                      slices=slice_metrics(tt, y, scores, frame, slices, min_rows),
                      test_rows=len(frame))


def make_plots(spec: FeatureSpec, frame: pd.DataFrame, scores: np.ndarray,
               booster: xgb.Booster, out_dir: str | Path) -> list[str]:
    """The task type's plots as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tt = task_type(spec.task)
    y = spec.encode_target(frame[spec.target])
    paths: list[str] = []
    for kind in tt.plots:
        fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
        if kind == "roc":
            fpr, tpr, _ = skm.roc_curve(y, scores)
            ax.plot(fpr, tpr, label=f"AUC {skm.roc_auc_score(y, scores):.3f}")
            ax.plot([0, 1], [0, 1], "--", color="grey")
            ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
            ax.legend(loc="lower right")
        elif kind == "pr":
            prec, rec, _ = skm.precision_recall_curve(y, scores)
            ax.plot(rec, prec, label=f"AP {skm.average_precision_score(y, scores):.3f}")
            ax.axhline(y.mean(), ls="--", color="grey", label="base rate")
            ax.set(xlabel="recall", ylabel="precision", title="Precision-recall")
            ax.legend()
        elif kind == "confusion":
            labels = scores.argmax(axis=1) if scores.ndim == 2 else (scores >= 0.5).astype(int)
            skm.ConfusionMatrixDisplay.from_predictions(
                y, labels, labels=list(range(len(spec.classes))),
                display_labels=spec.classes, ax=ax, colorbar=False)
            ax.set_title("Confusion matrix (test set)")
        elif kind == "residuals":
            resid = y - scores
            ax.scatter(scores, resid, s=4, alpha=0.3)
            ax.axhline(0, color="grey", ls="--")
            ax.set(xlabel="predicted", ylabel="actual - predicted", title="Residuals")
        elif kind == "importance":
            gain = booster.get_score(importance_type="gain")
            top = sorted(gain.items(), key=lambda kv: kv[1])[-15:]
            ax.barh([k for k, _ in top], [v for _, v in top])
            ax.set(xlabel="gain", title="Feature importance")
        fig.tight_layout()
        path = out_dir / f"{kind}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(str(path))
    return paths


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(df: pd.DataFrame, test_rows: list[int], trained: TrainResult, slices: list[str],
             min_slice_rows: int, plot_dir: str) -> EvalReport:
    """Score the held-out test set with the new booster; metrics, slices and plots."""
    booster = trained.booster()
    test = df.iloc[test_rows]
    scores = booster_scores(booster, trained.feature_spec, test)
    report = evaluate_scores(trained.feature_spec, test, scores, slices, min_slice_rows)
    report.plots = make_plots(trained.feature_spec, test, scores, booster, plot_dir)
    return report
