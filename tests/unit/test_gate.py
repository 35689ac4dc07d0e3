import pytest

from tasks.contracts.training import EvalReport
from tasks.core.config import GateSpec
from tasks.training.gate import decide


def report(value, metric="roc_auc", slices=None):
    return EvalReport(primary_metric=metric, metrics={metric: value}, slices=slices or {},
                      test_rows=100)


GATE = GateSpec(metric="roc_auc", threshold=0.8, max_regression=0.01, slice_max_regression=0.03)


def test_first_model_is_judged_on_the_floor_alone():
    assert decide(report(0.85), None, GATE).passed
    decision = decide(report(0.75), None, GATE)
    assert not decision.passed
    assert decision.reasons == ["roc_auc 0.7500 misses the floor 0.8"]


def test_regression_against_champion_rejects():
    decision = decide(report(0.85), report(0.87), GATE, champion_version="3")
    assert not decision.passed
    assert "vs champion v3 0.8700" in decision.reasons[0]


def test_small_regression_within_allowance_passes():
    assert decide(report(0.865), report(0.87), GATE, champion_version="3").passed


def test_lower_is_better_metric_uses_a_ceiling():
    gate = GateSpec(metric="rmse", threshold=3000, max_regression=50)
    assert decide(report(2900, "rmse"), None, gate).passed
    assert not decide(report(3100, "rmse"), None, gate).passed
    assert not decide(report(2900, "rmse"), report(2800, "rmse"), gate, "1").passed
    assert decide(report(2840, "rmse"), report(2800, "rmse"), gate, "1").passed


def test_slice_regression_rejects_and_names_the_slice():
    new = report(0.86, slices={"region": {"south": {"roc_auc": 0.80, "rows": 200},
                                          "north": {"roc_auc": 0.90, "rows": 200}}})
    old = report(0.86, slices={"region": {"south": {"roc_auc": 0.85, "rows": 200},
                                          "north": {"roc_auc": 0.89, "rows": 200}}})
    decision = decide(new, old, GATE, "2")
    assert not decision.passed
    assert decision.reasons == ["region=south: roc_auc 0.8000 vs champion 0.8500 "
                                "(regression 0.0500, allowed 0.03)"]


def test_champion_that_cannot_be_rescored_rejects():
    decision = decide(report(0.9), None, GATE, "4", champion_error="missing column x")
    assert not decision.passed and "could not be re-scored" in decision.reasons[0]


def test_missing_metric_rejects():
    decision = decide(EvalReport(primary_metric="roc_auc", metrics={}, slices={}, test_rows=5),
                      None, GATE)
    assert not decision.passed


@pytest.mark.parametrize("value,passed", [(0.8, True), (0.7999, False)])
def test_floor_is_inclusive(value, passed):
    assert decide(report(value), None, GATE).passed is passed
