"""The task-type table: objective, metrics, direction and plots per task, in one place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # imported where metrics are computed: reading a config needs no numpy
    import numpy as np

TaskName = Literal["binary", "multiclass", "regression"]


@dataclass(frozen=True)
class Metric:
    """A metric: how to compute it from (y_true, scores, predicted labels) and which way is
    better. Labels come from the prediction table (threshold, likeliest class), never here."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray, np.ndarray | None], float]
    higher_is_better: bool
    needs_both_classes: bool = False


class _LazyMetrics:
    """scikit-learn's metrics, imported on first use (it costs ~2 s and most commands skip it)."""

    def __getattr__(self, name: str):
        from sklearn import metrics

        return getattr(metrics, name)


skm = _LazyMetrics()


def _log_loss(y: np.ndarray, s: np.ndarray, _labels=None) -> float:
    import numpy as np

    labels = np.arange(s.shape[1]) if s.ndim == 2 else [0, 1]
    return float(skm.log_loss(y, s, labels=labels))


def _roc_auc(y: np.ndarray, s: np.ndarray, _labels=None) -> float:
    import numpy as np

    if s.ndim == 2:
        return float(
            skm.roc_auc_score(y, s, multi_class="ovr", average="macro", labels=np.arange(s.shape[1]))
        )
    return float(skm.roc_auc_score(y, s))


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("roc_auc", _roc_auc, True, needs_both_classes=True),
        Metric("pr_auc", lambda y, s, _: float(skm.average_precision_score(y, s)), True, True),
        Metric("log_loss", _log_loss, False),
        Metric("accuracy", lambda y, _, labels: float(skm.accuracy_score(y, labels)), True),
        Metric("f1", lambda y, _, labels: float(skm.f1_score(y, labels, zero_division=0)), True),
        Metric("precision", lambda y, _, labels: float(
            skm.precision_score(y, labels, zero_division=0)), True),
        Metric("recall", lambda y, _, labels: float(
            skm.recall_score(y, labels, zero_division=0)), True),
        Metric("f1_macro", lambda y, _, labels: float(
            skm.f1_score(y, labels, average="macro", zero_division=0)), True),
        Metric("rmse", lambda y, p, _: float(skm.mean_squared_error(y, p)) ** 0.5, False),
        Metric("mae", lambda y, p, _: float(skm.mean_absolute_error(y, p)), False),
        Metric("r2", lambda y, p, _: float(skm.r2_score(y, p)), True),
    ]
}


@dataclass(frozen=True)
class TaskType:
    """Everything that differs between binary, multiclass and regression models."""

    name: TaskName
    objective: str
    eval_metric: str
    metrics: tuple[str, ...]
    primary_metric: str
    plots: tuple[str, ...]
    stratify: bool
    min_classes: int
    max_classes: int | None


TASK_TYPES: dict[str, TaskType] = {
    "binary": TaskType(
        name="binary",
        objective="binary:logistic",
        eval_metric="logloss",
        metrics=("roc_auc", "pr_auc", "log_loss", "accuracy", "f1", "precision", "recall"),
        primary_metric="roc_auc",
        plots=("roc", "pr", "confusion", "importance", "shap"),
        stratify=True,
        min_classes=2,
        max_classes=2,
    ),
    "multiclass": TaskType(
        name="multiclass",
        objective="multi:softprob",
        eval_metric="mlogloss",
        metrics=("f1_macro", "accuracy", "log_loss", "roc_auc"),
        primary_metric="f1_macro",
        plots=("confusion", "importance", "shap"),
        stratify=True,
        min_classes=2,
        max_classes=None,
    ),
    "regression": TaskType(
        name="regression",
        objective="reg:squarederror",
        eval_metric="rmse",
        metrics=("rmse", "mae", "r2"),
        primary_metric="rmse",
        plots=("residuals", "importance", "shap"),
        stratify=False,
        min_classes=0,
        max_classes=None,
    ),
}


def task_type(name: str) -> TaskType:
    return TASK_TYPES[name]


def compute_metrics(task: TaskType, y: np.ndarray, scores: np.ndarray,
                    labels: np.ndarray | None = None) -> dict[str, float]:
    """All metrics of a task type from true values, scores and the predicted labels; metrics
    undefined on this data (one class present) are left out."""
    import numpy as np

    out: dict[str, float] = {}
    present = len(np.unique(y)) if task.name != "regression" else 0
    for name in task.metrics:
        metric = METRICS[name]
        if metric.needs_both_classes and present < 2:
            continue
        if name == "roc_auc" and task.name == "multiclass" and present < scores.shape[1]:
            continue
        out[name] = metric.fn(y, scores, labels)
    return out


def is_better(metric: str, new: float, old: float) -> bool:
    return new > old if METRICS[metric].higher_is_better else new < old


def regression_amount(metric: str, new: float, reference: float) -> float:
    """How much worse `new` is than `reference` (positive = worse), in the metric's own units."""
    return reference - new if METRICS[metric].higher_is_better else new - reference
