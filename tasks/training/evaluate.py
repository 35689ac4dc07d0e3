"""Evaluate stage: the candidate's held-out metrics, metrics per slice, mean |SHAP| per
feature, and plots."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tasks.contracts import explanations
from tasks.contracts.training import EvalReport, FeatureSpec, TrainResult
from tasks.core.steps import step
from tasks.core.tasktypes import task_type
from tasks.training.metrics import SCORE_ROWS, evaluate_scores, in_pieces

if TYPE_CHECKING:  # imported where they are used: a cached or reused run scores nothing
    import xgboost as xgb

FIRST_ROWS = 65_536  # a compact test column's first array; pages never written cost no memory
SCATTER_POINTS = 50_000  # residuals plotted at most (evenly spaced rows): a cloud, not every row


def booster_scores(booster: xgb.Booster, spec: FeatureSpec, frame: pd.DataFrame,
                   rows: int = SCORE_ROWS) -> np.ndarray:
    """The booster's raw predictions, `rows` rows at a time: a large test set (a streamed
    table's) is never held again as one feature matrix and one DMatrix."""
    import xgboost as xgb

    parts = [booster.predict(xgb.DMatrix(spec.matrix(piece), enable_categorical=True))
             for piece in in_pieces(frame, rows)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def plot_attributions(ax, attributions: dict[str, dict[str, float]], limit: int = 15) -> None:
    """Mean |SHAP| per feature, largest on top; multiclass bars stacked by class."""
    top = [f for f, _ in explanations.top_features(attributions[explanations.ALL], limit)][::-1]
    classes = [c for c in attributions if c != explanations.ALL] or [explanations.ALL]
    left = np.zeros(len(top))
    for cls in classes:
        widths = np.array([attributions[cls][f] for f in top])
        ax.barh(top, widths, left=left, label=None if cls == explanations.ALL else cls)
        left += widths
    if len(classes) > 1:
        ax.legend(fontsize=7, title="class")
    ax.set(xlabel="mean |SHAP| (margin units) on the test set",
           title="Feature attribution (tree SHAP)")


def make_plots(spec: FeatureSpec, frame: pd.DataFrame, scores: np.ndarray,
               booster: xgb.Booster, out_dir: str | Path,
               attributions: dict[str, dict[str, float]] | None = None) -> list[str]:
    """The task type's plots as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn import metrics as skm

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
            # drop_intermediate: only the points that shape the curve (a tenth of them at 800k rows)
            prec, rec, _ = skm.precision_recall_curve(y, scores, drop_intermediate=True)
            ax.plot(rec, prec, label=f"AP {skm.average_precision_score(y, scores):.3f}")
            ax.axhline(y.mean(), ls="--", color="grey", label="base rate")
            ax.set(xlabel="recall", ylabel="precision", title="Precision-recall")
            ax.legend()
        elif kind == "confusion":
            labels = spec.labels(scores)
            skm.ConfusionMatrixDisplay.from_predictions(
                y, labels, labels=list(range(len(spec.classes))),
                display_labels=spec.classes, ax=ax, colorbar=False)
            ax.set_title("Confusion matrix (test set)")
        elif kind == "residuals":
            shown = np.linspace(0, len(y) - 1, min(len(y), SCATTER_POINTS)).astype(int)
            ax.scatter(scores[shown], (y - scores)[shown], s=4, alpha=0.3)
            ax.axhline(0, color="grey", ls="--")
            ax.set(xlabel="predicted", ylabel="actual - predicted", title="Residuals")
        elif kind == "importance":
            gain = booster.get_score(importance_type="gain")
            top = sorted(gain.items(), key=lambda kv: kv[1])[-15:]
            ax.barh([k for k, _ in top], [v for _, v in top])
            ax.set(xlabel="gain", title="Feature importance")
        elif kind == "shap":
            if not attributions:
                plt.close(fig)
                continue
            plot_attributions(ax, attributions)
        fig.tight_layout()
        path = out_dir / f"{kind}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(str(path))
    return paths


def compact_test(frames: Iterable[pd.DataFrame], spec: FeatureSpec, slices: list[str]
                 ) -> pd.DataFrame:
    """A streamed table's test rows with only what evaluation and the champion's re-score
    read (features, target, slices), categories stored as codes: about 8 bytes per number
    and 1 per category of each test row, never the whole table. Numbers and category codes
    are copied into one array per column, grown in place: joining batches at the end would
    hold every test row twice (80 MB more at 4 M rows)."""
    keep = list(dict.fromkeys([*spec.features, spec.target, *slices]))
    grown: dict[str, np.ndarray] = {}
    pieces: dict[str, list[pd.Series]] = {}  # text and extension columns: joined at the end
    rows = 0
    for frame in frames:
        for col in keep:
            values = frame[col]
            if col in spec.categories:
                codes = pd.Categorical(values.astype("string").where(values.notna()),
                                       categories=spec.categories[col]).codes
                _append(grown, col, codes, rows)
            elif isinstance(values.dtype, np.dtype) and values.dtype != object:
                _append(grown, col, values.to_numpy(), rows)
            else:
                pieces.setdefault(col, []).append(
                    values.astype("category") if values.dtype == object else values)
        rows += len(frame)
    if not grown and not pieces:
        return pd.DataFrame(columns=keep)
    columns: dict[str, Any] = {}
    for col in keep:
        if col in pieces:
            columns[col] = pd.concat(pieces.pop(col), ignore_index=True)
            continue
        values = grown.pop(col)
        values.resize(rows, refcheck=False)
        columns[col] = pd.Categorical.from_codes(values, categories=spec.categories[col]) \
            if col in spec.categories else values
    return pd.DataFrame(columns, copy=False)  # a block per column: no copy to consolidate


def _append(grown: dict[str, np.ndarray], col: str, values: np.ndarray, at: int) -> None:
    """Write values at row `at` of the column's array, growing it in place (realloc: a large
    array is remapped, not copied) or widening its type (an integer batch, then a float one)."""
    array = grown.get(col)
    if array is None:
        array = grown[col] = np.empty(max(len(values), FIRST_ROWS), dtype=values.dtype)
    elif np.result_type(array.dtype, values.dtype) != array.dtype:
        array = grown[col] = array.astype(np.result_type(array.dtype, values.dtype))
    end = at + len(values)
    if end > len(array):
        array.resize(max(2 * len(array), end), refcheck=False)
    array[at:end] = values


def test_rows_of(df: pd.DataFrame, test_rows: np.ndarray | None) -> pd.DataFrame:
    """The held-out rows: positions in df, or all of df (a streamed table's compact test set)."""
    return df if test_rows is None else df.iloc[test_rows]


@step("evaluate")
def evaluate(df: pd.DataFrame, test_rows: np.ndarray | None, trained: TrainResult,
             slices: list[str], min_slice_rows: int, plot_dir: str) -> EvalReport:
    """Score the held-out test set with the new booster; metrics (labels at the chosen
    threshold), slices, mean |SHAP| per feature (on a bounded sample) and plots."""
    booster = trained.booster()
    test = test_rows_of(df, test_rows)
    spec = trained.feature_spec
    scores = booster_scores(booster, spec, test)
    report = evaluate_scores(spec, test, scores, slices, min_slice_rows)
    contribs = explanations.contributions(booster, spec.matrix(explanations.sample(test)))
    attributions = explanations.mean_abs(contribs, spec.features, spec.classes)
    return report.model_copy(update={
        "attributions": attributions,
        "plots": make_plots(spec, test, scores, booster, plot_dir, attributions)})
