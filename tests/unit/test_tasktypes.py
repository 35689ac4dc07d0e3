import numpy as np
import pytest

from tasks.core.tasktypes import METRICS, TASK_TYPES, compute_metrics, regression_amount


def test_every_task_metric_is_known_and_primary_is_listed():
    for tt in TASK_TYPES.values():
        assert tt.primary_metric in tt.metrics
        assert all(m in METRICS for m in tt.metrics)


@pytest.mark.parametrize("metric,higher", [("roc_auc", True), ("rmse", False), ("mae", False),
                                           ("log_loss", False), ("r2", True), ("f1_macro", True)])
def test_direction(metric, higher):
    assert METRICS[metric].higher_is_better is higher


def test_regression_amount_signs():
    assert regression_amount("roc_auc", 0.8, 0.85) == pytest.approx(0.05)
    assert regression_amount("rmse", 110, 100) == pytest.approx(10)
    assert regression_amount("rmse", 90, 100) == pytest.approx(-10)


def test_binary_metrics_skip_auc_with_one_class():
    out = compute_metrics(TASK_TYPES["binary"], np.zeros(5), np.full(5, 0.1), np.zeros(5))
    assert "roc_auc" not in out and out["accuracy"] == 1.0


def test_multiclass_metrics():
    y = np.array([0, 1, 2, 2])
    p = np.eye(3)[[0, 1, 2, 1]] * 0.9 + 0.1 / 3
    out = compute_metrics(TASK_TYPES["multiclass"], y, p, p.argmax(axis=1))
    assert out["accuracy"] == 0.75 and 0 < out["f1_macro"] < 1
