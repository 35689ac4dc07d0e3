"""Choose step: a binary model's decision threshold, picked on the validation split (never the
test split) by the configured rule, and stored in the version's feature spec, which the
prediction table, scoring and the served model read."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from tasks.contracts import predictions
from tasks.contracts.training import TrainResult
from tasks.core.decision import ThresholdSpec
from tasks.core.steps import step


def _counts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Candidate cut-offs (every distinct score, highest first) with TP and FP at each, for the
    rule "positive when P(positive) >= cut-off"."""
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    tp = np.cumsum(y_sorted == 1)
    fp = np.cumsum(y_sorted != 1)
    last = np.r_[np.flatnonzero(np.diff(p_sorted) != 0), len(p_sorted) - 1]  # end of each tie
    return p_sorted[last], tp[last], fp[last], int((y == 1).sum())


def choose(y: np.ndarray, p: np.ndarray, rule: ThresholdSpec | None) -> float:
    """The cut-off the rule picks on (y, P(positive)); ties go to the higher cut-off."""
    if rule is None:
        return predictions.DEFAULT_THRESHOLD
    if rule.fixed is not None:
        return float(rule.fixed)
    cuts, tp, fp, positives = _counts(np.asarray(y), np.asarray(p, dtype=np.float64))
    fn = positives - tp
    if rule.optimize == "f1":
        score = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    elif rule.precision_at_recall is not None:
        recall = tp / max(positives, 1)
        precision = tp / np.maximum(tp + fp, 1)
        score = np.where(recall >= rule.precision_at_recall - 1e-12, precision, -1.0)
    else:
        assert rule.cost is not None
        score = -(rule.cost.fp * fp + rule.cost.fn * fn)
    return float(cuts[int(np.argmax(score))])


def rule_text(rule: ThresholdSpec | None) -> str:
    return "fixed 0.5 (default)" if rule is None else rule.describe()


def with_threshold(trained: TrainResult, frame: pd.DataFrame, rule: ThresholdSpec | None
                   ) -> TrainResult:
    """The trained result with its decision threshold chosen on `frame` (the validation rows)."""
    spec = trained.feature_spec
    if spec.task != "binary":
        return trained
    booster = trained.booster()
    scores = booster.inplace_predict(spec.matrix(frame))
    value = choose(spec.encode_target(frame[spec.target]), scores, rule)
    spec = spec.model_copy(update={"threshold": value, "threshold_rule": rule_text(rule)})
    return trained.model_copy(update={"feature_spec": spec})


def with_threshold_over(trained: TrainResult, frames: Iterable[pd.DataFrame],
                        rule: ThresholdSpec | None) -> TrainResult:
    """The same choice on the validation rows given in batches: only their targets and scores
    are kept (16 bytes a row)."""
    spec = trained.feature_spec
    if spec.task != "binary":
        return trained
    booster = trained.booster()
    ys, ps = [], []
    for frame in frames:
        if len(frame):
            ys.append(spec.encode_target(frame[spec.target]))
            ps.append(booster.inplace_predict(spec.matrix(frame)))
    value = choose(np.concatenate(ys), np.concatenate(ps), rule)
    spec = spec.model_copy(update={"threshold": value, "threshold_rule": rule_text(rule)})
    return trained.model_copy(update={"feature_spec": spec})


@step("choose-threshold")
def choose_threshold(df: pd.DataFrame | None, valid_rows: np.ndarray | None, trained: TrainResult,
                     rule: ThresholdSpec | None, valid_batches=None) -> TrainResult:
    """Binary models: the decision threshold by the configured rule, on the validation split
    (rows of df, or a streamed table's validation batches)."""
    if valid_batches is not None:
        return with_threshold_over(trained, valid_batches, rule)
    if df is None:
        raise ValueError("choose_threshold needs the frame or a streamed table's batches")
    return with_threshold(trained, df.iloc[valid_rows], rule)
