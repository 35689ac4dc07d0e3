"""Held-out metrics of scores: overall and per slice, labels from the prediction table. Shared by
evaluation (the candidate) and the gate (the champion re-scored on the same rows)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from tasks.contracts.training import EvalReport, FeatureSpec
from tasks.core.tasktypes import TaskType, compute_metrics, task_type

SCORE_ROWS = 131_072  # test rows scored at a time (candidate and champion): never one matrix


def in_pieces(frame: pd.DataFrame, rows: int = SCORE_ROWS) -> Iterator[pd.DataFrame]:
    """The frame `rows` rows at a time, in order (an empty frame once, as it is)."""
    for start in range(0, max(len(frame), 1), rows):
        yield frame.iloc[start:start + rows]


def slice_metrics(tt: TaskType, y: np.ndarray, scores: np.ndarray, labels: np.ndarray | None,
                  frame: pd.DataFrame, slices: list[str], min_rows: int
                  ) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for col in slices:
        values = frame[col].astype("string").fillna("<null>").to_numpy()
        per: dict[str, dict[str, float]] = {}
        for value in sorted(set(values)):
            mask = values == value
            if mask.sum() < min_rows:
                continue
            per[str(value)] = {
                **compute_metrics(tt, y[mask], scores[mask],
                                  None if labels is None else labels[mask]),
                "rows": float(mask.sum())}
        out[col] = per
    return out


def evaluate_scores(spec: FeatureSpec, frame: pd.DataFrame, scores: np.ndarray,
                    slices: list[str], min_rows: int, labels: np.ndarray | None = None
                    ) -> EvalReport:
    """Metrics of `scores` against the frame's target, overall and per slice value; labels
    from the spec's threshold unless given (a champion is judged at its own threshold)."""
    tt = task_type(spec.task)
    y = spec.encode_target(frame[spec.target])
    labels = spec.labels(scores) if labels is None else labels
    return EvalReport(primary_metric=tt.primary_metric,
                      metrics=compute_metrics(tt, y, scores, labels),
                      slices=slice_metrics(tt, y, scores, labels, frame, slices, min_rows),
                      test_rows=len(frame), threshold=spec.threshold,
                      threshold_rule=spec.threshold_rule)
