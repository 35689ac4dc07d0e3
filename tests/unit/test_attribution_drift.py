"""Attribution drift in monitoring: the reference profile's mean |SHAP| per feature against a
batch's, shares compared with the configured limit, shown in the drift report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from tasks.batch.attributions import AttributionCounter, attribution_drift, mean_attributions
from tasks.batch.champion import Champion
from tasks.batch.monitoring import compare, observe
from tasks.batch.profiles import reference_profile
from tasks.contracts.training import FeatureSpec
from tasks.core.config import MonitoringSpec
from tasks.reports.drift import drift_markdown, write_report

CATS = {"colour": ["blue", "red"]}
SPEC = FeatureSpec(task="binary", target="label", features=["amount", "age", "colour"],
                   categories=CATS, classes=["0", "1"])


def claims(n: int, seed: int, amount_spread: float = 15.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = rng.normal(100, amount_spread, n)
    age = rng.normal(40, 10, n)
    colour = np.where(rng.random(n) < 0.5, "red", "blue")
    logit = (amount - 100) / 10 + (age - 40) / 20 + (colour == "red") * 0.5
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"amount": amount, "age": age, "colour": colour, "label": label})


@pytest.fixture(scope="module")
def champion() -> Champion:
    train = claims(4000, seed=1)
    m = SPEC.matrix(train)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3},
                        xgb.DMatrix(m, train["label"], enable_categorical=True), 40)
    profile = reference_profile(m, booster.inplace_predict(m), CATS, SPEC.classes, "binary",
                                10).model_copy(update={"attributions": mean_attributions(booster, m)})
    return Champion(name="m", version="3", alias="champion", booster=booster, spec=SPEC,
                    profile=profile, sha256="x")


def test_a_batch_like_training_keeps_its_attribution_shares(champion, tmp_path):
    src = tmp_path / "batch.parquet"
    claims(3000, seed=2).to_parquet(src)
    observed = observe(champion, str(src), "label")
    report = compare(champion, observed, MonitoringSpec(), str(src))
    assert {a.name for a in report.attributions} == {"amount", "age", "colour"}
    assert not report.moved_attributions and report.verdict == "no-drift"
    assert "attribution shares within 0.1" in report.message
    assert max(abs(a.change) for a in report.attributions) < 0.05


def test_a_feature_whose_share_moves_is_marked_and_reported(champion, tmp_path):
    src = tmp_path / "batch.parquet"
    claims(3000, seed=2, amount_spread=1.0).to_parquet(src)  # amount barely varies any more
    observed = observe(champion, str(src), "label")
    report = compare(champion, observed, MonitoringSpec(attribution_shift=0.1), str(src))
    moved = {a.name: a for a in report.moved_attributions}
    assert "amount" in moved and moved["amount"].change < -0.1
    assert report.verdict == "drift" and "attribution of amount" in report.message
    assert report.event_payload()["attribution_moved"]["amount"] < -0.1
    files = {f.name for f in write_report(report, champion.profile, observed.profile, tmp_path)}
    assert "drift_attributions.png" in files
    page = (tmp_path / "drift_report.html").read_text()
    assert "Attribution drift" in page and "moved" in page
    assert "| amount |" in drift_markdown(report)


def test_a_looser_limit_does_not_mark_the_same_move(champion, tmp_path):
    src = tmp_path / "batch.parquet"
    claims(3000, seed=2, amount_spread=1.0).to_parquet(src)
    observed = observe(champion, str(src), "label")
    report = compare(champion, observed, MonitoringSpec(attribution_shift=0.99), str(src))
    assert report.attributions and not report.moved_attributions


def test_a_profile_without_attributions_skips_the_check(champion, tmp_path):
    old = Champion(**{**champion.__dict__,
                      "profile": champion.profile.model_copy(update={"attributions": {}})})
    src = tmp_path / "batch.parquet"
    claims(3000, seed=2, amount_spread=1.0).to_parquet(src)
    observed = observe(old, str(src), "label")
    report = compare(old, observed, MonitoringSpec(), str(src))
    assert report.attributions == [] and observed.profile.attributions == {}
    assert "attribution" not in drift_markdown(report)


def test_attributions_are_sampled_per_batch(champion):
    counter = AttributionCounter(SPEC.features, rows_per_batch=100)
    for seed in (3, 4):
        counter.add(champion.booster, SPEC.matrix(claims(5000, seed=seed)))
    assert counter.rows == 200
    assert set(counter.means()) == set(SPEC.features)


def test_shares_compare_even_when_a_feature_is_new():
    rows = attribution_drift({"a": 1.0}, {"a": 1.0, "b": 1.0}, 0.2)
    assert {r.name: (r.reference_share, r.current_share, r.moved) for r in rows} == {
        "a": (1.0, 0.5, True), "b": (0.0, 0.5, True)}
    assert attribution_drift({}, {"a": 1.0}, 0.2) == []
