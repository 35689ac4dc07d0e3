"""Explanations: XGBoost's own exact tree SHAP values (`pred_contribs=True`), summarised as
mean |SHAP| per feature, compared as shares of the whole, and cut to the top k per row.

Shared by evaluation, the reference profile, monitoring, scoring and the reports. Contributions
are in the booster's margin units (log-odds for classifiers) and, with the bias, add up to the
raw margin. Categorical columns are used natively: an unseen category is coded as missing (as
in training) and takes the tree's default branch, like a missing value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

EXPLAIN_ROWS = 5_000  # rows summarised at most (evenly spaced): exact tree SHAP costs
# milliseconds per row on CPU for a tuned model, hundreds of times a prediction
ALL = "all"  # the key of the whole model's attributions (multiclass: averaged over classes)
EXPLAIN_FEATURE = "explain_{}_feature"
EXPLAIN_VALUE = "explain_{}_contribution"


def contributions(booster, matrix: pd.DataFrame) -> np.ndarray:
    """SHAP values per row and feature, bias last: (rows, features + 1), or
    (rows, classes, features + 1) for multiclass models."""
    import xgboost as xgb

    return booster.predict(xgb.DMatrix(matrix, enable_categorical=True), pred_contribs=True)


def sample(matrix: pd.DataFrame, rows: int = EXPLAIN_ROWS) -> pd.DataFrame:
    """At most `rows` evenly spaced rows (all of them when there are fewer)."""
    if len(matrix) <= rows:
        return matrix
    return matrix.iloc[np.linspace(0, len(matrix) - 1, rows).astype(int)]


def mean_abs(contribs: np.ndarray, features: list[str], classes: list[str]
             ) -> dict[str, dict[str, float]]:
    """Mean |SHAP| per feature (bias left out): under "all", and per class for multiclass."""
    values = np.abs(contribs[..., :-1]).astype(np.float64)
    if values.ndim == 2:
        return {ALL: dict(zip(features, values.mean(axis=0).tolist(), strict=True))}
    per_class = values.mean(axis=0)  # (classes, features)
    out = {c: dict(zip(features, per_class[i].tolist(), strict=True))
           for i, c in enumerate(classes)}
    out[ALL] = dict(zip(features, per_class.mean(axis=0).tolist(), strict=True))
    return out


def shares(means: dict[str, float]) -> dict[str, float]:
    """Each feature's share of the total mean |SHAP| (sums to 1; all zero for a constant model)."""
    total = sum(means.values())
    return {f: (v / total if total else 0.0) for f, v in means.items()}


def top_features(means: dict[str, float], k: int = 5) -> list[tuple[str, float]]:
    return sorted(means.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def share_changes(new: dict[str, float], old: dict[str, float]) -> dict[str, float]:
    """Change in share of the explanation per feature, new minus old (features in either)."""
    a, b = shares(new), shares(old)
    return {f: a.get(f, 0.0) - b.get(f, 0.0) for f in sorted(set(a) | set(b))}


def check_k(k: int, n_features: int) -> None:
    if k < 1 or k > n_features:
        raise ValueError(f"--explain {k}: the model has {n_features} features; ask for 1 to "
                         f"{n_features} contributions per row")


def top_contributions(contribs: np.ndarray, k: int, codes: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The k largest |SHAP| contributions per row, largest first: (feature indices, values),
    each (rows, k). Multiclass rows are explained for their predicted class (`codes`)."""
    check_k(k, contribs.shape[-1] - 1)
    values = contribs[..., :-1]
    if values.ndim == 3:
        values = values[np.arange(len(values)), codes]
    order = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :k]
    return order.astype(np.int32), np.take_along_axis(values, order, axis=1).astype(np.float64)


def column_names(k: int) -> list[str]:
    """The explanation columns of a scored row, in order."""
    return [name.format(i + 1) for i in range(k) for name in (EXPLAIN_FEATURE, EXPLAIN_VALUE)]
