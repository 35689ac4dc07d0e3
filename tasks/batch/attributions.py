"""Attribution drift: mean |SHAP| per feature of the model on its held-out test sample (the
evaluation's, stored in the reference profile) against the same on a batch, compared as each
feature's share of the whole explanation. Contributions are computed on an evenly spaced sample
of each batch, so the cost stays bounded however large the input."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.contracts import explanations
from tasks.contracts.batch import AttributionDrift

SAMPLE_ROWS = 1_000  # rows explained per batch (tree SHAP costs far more than a prediction)


class AttributionCounter:
    """Running mean |SHAP| per feature (averaged over classes for multiclass models)."""

    def __init__(self, features: list[str], rows_per_batch: int = SAMPLE_ROWS):
        self.features = features
        self.rows_per_batch = rows_per_batch
        self.sums = np.zeros(len(features), dtype=np.float64)
        self.rows = 0

    def add(self, booster, matrix: pd.DataFrame) -> None:
        picked = explanations.sample(matrix, self.rows_per_batch)
        if picked.empty:
            return
        values = np.abs(explanations.contributions(booster, picked)[..., :-1])
        if values.ndim == 3:
            values = values.mean(axis=1)
        self.sums += values.sum(axis=0, dtype=np.float64)
        self.rows += len(picked)

    def means(self) -> dict[str, float]:
        if not self.rows:
            return {}
        return dict(zip(self.features, (self.sums / self.rows).tolist(), strict=True))


def mean_attributions(booster, matrix: pd.DataFrame, rows: int = explanations.EXPLAIN_ROWS
                      ) -> dict[str, float]:
    """Mean |SHAP| per feature over (a sample of) a matrix: what a reference profile stores."""
    counter = AttributionCounter(list(matrix.columns), rows_per_batch=rows)
    counter.add(booster, matrix)
    return counter.means()


def attribution_drift(reference: dict[str, float], current: dict[str, float], limit: float
                      ) -> list[AttributionDrift]:
    """Per feature: share of the explanation at training and in the batch; moved when the share
    changed by more than `limit` (largest change first)."""
    if not reference or not current:
        return []
    before, after = explanations.shares(reference), explanations.shares(current)
    rows = [AttributionDrift(name=f, reference_share=round(before.get(f, 0.0), 6),
                             current_share=round(after.get(f, 0.0), 6),
                             moved=abs(after.get(f, 0.0) - before.get(f, 0.0)) > limit)
            for f in sorted(set(before) | set(after))]
    return sorted(rows, key=lambda r: -abs(r.change))
