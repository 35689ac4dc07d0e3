"""The prediction table: how booster output becomes a model's public prediction columns.

The one place for the decision threshold, the class labels and the column names. Evaluation,
scoring, monitoring, the smoke tests and the served model all use it; every model version
carries a copy (loaded by the pyfunc model), so a version keeps the rules it was approved with.
Self-contained on purpose: numpy and pandas only, no project imports.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULT_THRESHOLD = 0.5
PREDICTION = "prediction"
PROBABILITY = "probability"


def to_matrix(frame: pd.DataFrame, features: list[str], categories: dict[str, list[str]]
              ) -> pd.DataFrame:
    """The features in training order with the training categories; extra columns are ignored."""
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise ValueError(f"input is missing feature column(s): {', '.join(missing)}")
    out = {}
    for col in features:
        values = frame[col]
        if col in categories:
            text = values.astype("string").where(values.notna())
            out[col] = pd.Categorical(text, categories=categories[col])
        else:
            out[col] = pd.to_numeric(values, errors="raise").astype("float32")
    return pd.DataFrame(out, index=frame.index)


def label_codes(raw: np.ndarray, task: str, threshold: float | None = None) -> np.ndarray | None:
    """Class index per row: P(positive) at or above the threshold for binary models, the likeliest
    class for multiclass ones; None for regression."""
    if task == "regression":
        return None
    if task == "multiclass":
        return raw.argmax(axis=1)
    cut = DEFAULT_THRESHOLD if threshold is None else threshold
    return (raw >= cut).astype(np.int8)


def class_codes(raw: np.ndarray, task: str, threshold: float | None = None) -> np.ndarray:
    """label_codes of a classification model (a regression model has none)."""
    codes = label_codes(raw, task, threshold)
    if codes is None:
        raise ValueError(f"a {task} model has no class codes")
    return codes


def probability_columns(raw: np.ndarray, task: str, classes: list[str]) -> dict[str, np.ndarray]:
    """`probability` (P(positive)) for binary models, `probability_<class>` for multiclass."""
    if task == "binary":
        return {PROBABILITY: raw.astype(np.float64)}
    if task == "multiclass":
        return {f"{PROBABILITY}_{c}": raw[:, i].astype(np.float64) for i, c in enumerate(classes)}
    return {}


def column_names(task: str, classes: list[str]) -> list[str]:
    """The public columns of a prediction, in order."""
    if task == "regression":
        return [PREDICTION]
    if task == "binary":
        return [PREDICTION, PROBABILITY]
    return [PREDICTION, *[f"{PROBABILITY}_{c}" for c in classes]]


def predictions_frame(raw: np.ndarray, task: str, classes: list[str],
                      threshold: float | None = None) -> pd.DataFrame:
    """Booster output as the model's public prediction columns."""
    if task == "regression":
        return pd.DataFrame({PREDICTION: raw.astype(np.float64)})
    codes = label_codes(raw, task, threshold)
    frame = pd.DataFrame({PREDICTION: np.asarray(classes)[codes]})
    for name, values in probability_columns(raw, task, classes).items():
        frame[name] = values
    return frame


def scores_from_frame(frame: pd.DataFrame, task: str, classes: list[str]) -> np.ndarray:
    """A prediction frame back to booster-style scores in this class order (the inverse of
    predictions_frame), so a served or older model can be compared with a new one."""
    if task == "regression":
        return frame[PREDICTION].to_numpy(dtype=float)
    if task == "binary":
        return frame[PROBABILITY].to_numpy(dtype=float)
    cols = [f"{PROBABILITY}_{c}" for c in classes]
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ValueError(f"predictions lack the classes' columns {', '.join(missing)}")
    return frame[cols].to_numpy(dtype=float)


def check_frame(frame: pd.DataFrame, rows: int, task: str, classes: list[str]) -> list[str]:
    """Problems with a prediction frame (row count, columns, classes, ranges); empty when fine."""
    problems = []
    if len(frame) != rows:
        problems.append(f"{len(frame)} predictions for {rows} rows")
    if PREDICTION not in frame:
        return [*problems, f"no '{PREDICTION}' column in the response"]
    if task == "regression":
        if not np.isfinite(frame[PREDICTION].astype(float)).all():
            problems.append("non-finite regression predictions")
        return problems
    unknown = set(frame[PREDICTION].astype(str)) - set(classes)
    if unknown:
        problems.append(f"unknown classes predicted: {sorted(unknown)}")
    missing = [c for c in column_names(task, classes) if c not in frame]
    if missing:
        return [*problems, f"missing column(s) {', '.join(missing)}"]
    probs = frame[[c for c in column_names(task, classes) if c != PREDICTION]].to_numpy(dtype=float)
    if not ((probs >= 0) & (probs <= 1)).all():
        problems.append("probabilities outside [0, 1]")
    if task == "multiclass" and not np.allclose(probs.sum(axis=1), 1, atol=1e-4):
        problems.append("class probabilities do not sum to 1")
    return problems
