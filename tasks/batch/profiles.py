"""Reference profiles: per-column distributions of a model's training data and predictions,
counted the same way later on scoring inputs, compared by the population stability index."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from tasks.contracts import predictions
from tasks.contracts.batch import PREDICTION, ColumnProfile, Profile
from tasks.contracts.explanations import ALL
from tasks.contracts.training import EvalReport, TrainResult
from tasks.core.steps import step
from tasks.core.tasktypes import TaskName

EPSILON = 1e-4  # empty bins would make PSI infinite; the usual floor


def numeric_edges(values: np.ndarray, bins: int) -> list[float]:
    """Interior quantile cut points (duplicates dropped, so a 0/1 column gets one edge)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return []
    cuts = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1], method="lower")
    return np.unique(cuts.astype(np.float64)).tolist()


def count_numeric(values: np.ndarray, edges: list[float]) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    missing = ~np.isfinite(values)
    bins = np.searchsorted(np.asarray(edges, dtype=np.float64), values[~missing], side="right")
    counts = np.bincount(bins, minlength=len(edges) + 1)
    return np.append(counts, int(missing.sum()))


def count_codes(codes: np.ndarray, n_categories: int, missing: int) -> np.ndarray:
    """Counts of category codes; code -1 covers unseen and missing values, `missing` says how
    many of those were missing."""
    counts = np.bincount(codes + 1, minlength=n_categories + 1)
    unseen_or_missing = int(counts[0])
    return np.append(counts[1:], [unseen_or_missing - missing, missing])


def prediction_values(raw: np.ndarray, task: TaskName) -> np.ndarray:
    """What is profiled of the predictions: P(positive), the predicted class code, the value."""
    if task == "multiclass":
        return predictions.class_codes(raw, task)
    return raw.astype(np.float64)


def _count(template: ColumnProfile, values, missing: int = 0) -> np.ndarray:
    if template.kind == "numeric":
        return count_numeric(values, template.edges)
    return count_codes(np.asarray(values), len(template.categories), missing)


def reference_profile(matrix: pd.DataFrame, raw: np.ndarray, categories: dict[str, list[str]],
                      classes: list[str], task: TaskName, bins: int, metric: str | None = None,
                      metric_value: float | None = None) -> Profile:
    """Bin the training matrix (model features, training categories) and its predictions."""
    columns: dict[str, ColumnProfile] = {}
    for col in matrix.columns:
        if col in categories:
            values = matrix[col]
            template = ColumnProfile(kind="categorical", categories=categories[col], counts=[])
            counts = count_codes(values.cat.codes.to_numpy(), len(categories[col]),
                                 int(values.isna().sum()))
        else:
            values = matrix[col].to_numpy(dtype=np.float64)
            template = ColumnProfile(kind="numeric", edges=numeric_edges(values, bins), counts=[])
            counts = count_numeric(values, template.edges)
        columns[col] = template.model_copy(update={"counts": counts.tolist()})
    predicted = prediction_values(raw, task)
    if task == "multiclass":
        template = ColumnProfile(kind="categorical", categories=classes, counts=[])
        counts = count_codes(predicted, len(classes), 0)
    else:
        template = ColumnProfile(kind="numeric", edges=numeric_edges(predicted, bins), counts=[])
        counts = count_numeric(predicted, template.edges)
    columns[PREDICTION] = template.model_copy(update={"counts": counts.tolist()})
    return Profile(rows=len(matrix), columns=columns, metric=metric, metric_value=metric_value)


class ProfileCounter:
    """Counts batches into the bins of a reference profile, one batch at a time."""

    def __init__(self, reference: Profile):
        self.reference = reference
        self.counts = {name: np.zeros(len(col.counts), dtype=np.int64)
                       for name, col in reference.columns.items()}
        self.rows = 0

    def add(self, matrix: pd.DataFrame, raw: np.ndarray, task: TaskName,
            missing: dict[str, int] | None = None) -> None:
        missing = missing or {}
        for name, template in self.reference.columns.items():
            if name == PREDICTION:
                values = prediction_values(raw, task)
            elif template.kind == "categorical":
                values = matrix[name].cat.codes.to_numpy()
            else:
                values = matrix[name].to_numpy(dtype=np.float64)
            self.counts[name] += _count(template, values, missing.get(name, 0))
        self.rows += len(matrix)

    def profile(self) -> Profile:
        return Profile(rows=self.rows, columns={
            name: col.model_copy(update={"counts": self.counts[name].tolist()})
            for name, col in self.reference.columns.items()})


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two distributions over the same bins."""
    e = np.clip(np.asarray(expected, dtype=float), EPSILON, None)
    a = np.clip(np.asarray(actual, dtype=float), EPSILON, None)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def psi_noise_bound(expected_counts, actual_counts, significance: float) -> float:
    """The PSI two samples of the same distribution exceed with probability `significance`:
    PSI / (1/n + 1/m) is about chi-square with (bins - 1) degrees of freedom (bins: those
    non-empty in either sample; n, m: the two sample sizes). Small batches and many bins raise
    it, so noise alone is not called drift."""
    from scipy.stats import chi2

    e, a = np.asarray(expected_counts, dtype=float), np.asarray(actual_counts, dtype=float)
    n, m = e.sum(), a.sum()
    if n == 0 or m == 0:
        return float("inf")
    dof = max(int(np.count_nonzero((e + a) > 0)) - 1, 1)
    return float(chi2.ppf(1 - significance, dof) * (1 / n + 1 / m))


SAMPLE_ROWS = 200_000  # rows a streamed table's bin edges are cut from (a uniform sample)


def uniform_sample(frames: Iterable[pd.DataFrame], rows: int = SAMPLE_ROWS) -> pd.DataFrame:
    """A uniform sample of at most `rows` rows of frames given one by one: the rows with the
    smallest random keys so far (seeded, so the same input gives the same sample)."""
    rng = np.random.default_rng(0)
    kept: pd.DataFrame | None = None
    for frame in frames:
        if not len(frame):
            continue
        frame = frame.assign(_key=rng.random(len(frame)))
        kept = frame if kept is None else pd.concat([kept, frame], ignore_index=True)
        if len(kept) > rows:
            kept = kept.nsmallest(rows, "_key").reset_index(drop=True)
    return pd.DataFrame() if kept is None else kept.drop(columns="_key")


def profile_batches(passes, trained: TrainResult, report: EvalReport, bins: int) -> Profile:
    """The same reference profile over a streamed table's training rows: bin edges from a
    bounded uniform sample (one pass), counts over every row (a second pass), mean |SHAP| the
    evaluation's.
    `passes()` starts a new pass over the training rows."""
    spec = trained.feature_spec
    booster = trained.booster()
    sample = uniform_sample(spec.matrix(frame) for frame in passes())  # features only
    edges = reference_profile(sample, booster.inplace_predict(sample), spec.categories,
                              spec.classes, spec.task, bins)
    counter = ProfileCounter(edges)
    for frame in passes():
        if len(frame):
            matrix = spec.matrix(frame)
            counter.add(matrix, booster.inplace_predict(matrix), spec.task,
                        {c: int(matrix[c].isna().sum()) for c in spec.categories})
    return counter.profile().model_copy(update={  # the evaluation's metric and SHAP
        "metric": report.primary_metric,
        "metric_value": report.metrics.get(report.primary_metric),
        "attributions": dict(report.attributions.get(ALL, {}))})


@step("profile-training-data")
def profile_training_data(frame: pd.DataFrame | None, rows: np.ndarray | None,
                          trained: TrainResult, report: EvalReport, bins: int,
                          passes=None) -> Profile:
    """The reference profile stored with the version: training rows, the tuned model's
    predictions on them, the test score of the primary metric and mean |SHAP| per feature
    (the evaluation's, on its bounded test sample: tree SHAP is computed once per run). A
    streamed table gives `passes` (a new pass over its training rows per call) instead."""
    if passes is not None:
        return profile_batches(passes, trained, report, bins)
    if frame is None:
        raise ValueError("profile_training_data needs the frame or a streamed table's passes")
    spec = trained.feature_spec
    matrix = spec.matrix(frame.iloc[rows])
    booster = trained.booster()
    raw = booster.inplace_predict(matrix)
    profile = reference_profile(matrix, raw, spec.categories, spec.classes, spec.task, bins,
                                report.primary_metric, report.metrics.get(report.primary_metric))
    # the evaluation's SHAP: attribution drift's reference
    return profile.model_copy(update={"attributions": dict(report.attributions.get(ALL, {}))})
