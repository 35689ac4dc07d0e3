"""Reference profiles, PSI and the drift verdict, on small synthetic batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.batch.champion import Champion
from tasks.batch.monitoring import compare
from tasks.batch.profiles import (
    ProfileCounter,
    count_codes,
    count_numeric,
    numeric_edges,
    psi,
    reference_profile,
)
from tasks.contracts.batch import PREDICTION, Observed
from tasks.contracts.training import FeatureSpec
from tasks.core.config import MonitoringSpec
from tasks.core.errors import DRIFT_EXITS

CATS = {"colour": ["blue", "red"]}


def matrix(n: int, seed: int, shift: float = 0.0, red: float = 0.5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    colour = np.where(rng.random(n) < red, "red", "blue")
    return pd.DataFrame({"amount": (rng.normal(100, 15, n) * (1 + shift)).astype("float32"),
                         "colour": pd.Categorical(colour, categories=CATS["colour"])})


def profile_of(frame: pd.DataFrame, raw: np.ndarray, **kw):
    return reference_profile(frame, raw, CATS, ["0", "1"], "binary", bins=10, **kw)


def test_psi_is_zero_for_identical_and_large_for_shifted_distributions():
    assert psi(np.array([10, 20, 30]), np.array([1, 2, 3])) == pytest.approx(0.0)
    assert psi(np.array([50, 50]), np.array([90, 10])) > 0.5
    # empty bins do not make it infinite
    assert np.isfinite(psi(np.array([100, 0]), np.array([0, 100])))


def test_numeric_bins_follow_training_quantiles_and_count_missing():
    values = np.arange(100, dtype=float)
    edges = numeric_edges(values, 4)
    assert edges == [24.0, 49.0, 74.0]
    counts = count_numeric(np.append(values, [np.nan, np.inf]), edges)
    assert counts.tolist() == [24, 25, 25, 26, 2]
    flags = np.array([0.0, 1.0, 1.0] * 50)  # a 0/1 feature: its two values land in two bins
    counts = count_numeric(flags, numeric_edges(flags, 10))
    assert sorted(c for c in counts if c) == [50, 100]


def test_categorical_counts_separate_unseen_from_missing():
    codes = np.array([0, 1, 1, -1, -1, -1])
    assert count_codes(codes, 2, missing=1).tolist() == [1, 2, 2, 1]


def test_counter_over_batches_equals_one_pass():
    frame = matrix(1000, 1)
    raw = np.linspace(0, 1, 1000)
    reference = profile_of(frame, raw)
    counter = ProfileCounter(reference)
    counter.add(frame.iloc[:300], raw[:300], "binary")
    counter.add(frame.iloc[300:], raw[300:], "binary")
    assert counter.rows == 1000
    assert counter.profile().columns == reference.columns
    assert reference.columns[PREDICTION].rows == 1000


def champion(reference) -> Champion:
    spec = FeatureSpec(task="binary", target="y", features=["amount", "colour"],
                       categories=CATS, classes=["0", "1"])
    return Champion(name="m", version="3", alias="champion", booster=None, spec=spec,
                    profile=reference, sha256="x")


def observed(frame, raw, reference, metric=None) -> Observed:
    counter = ProfileCounter(reference)
    counter.add(frame, raw, "binary")
    return Observed(profile=counter.profile(),
                    metric=metric[0] if metric else None, metric_value=metric[1] if metric else None)


def test_verdicts_no_drift_drift_and_insufficient():
    ref_frame, rng = matrix(5000, 1), np.random.default_rng(9)
    raw = rng.beta(1, 8, 5000)
    reference = profile_of(ref_frame, raw, metric="roc_auc", metric_value=0.9)
    champ, spec = champion(reference), MonitoringSpec()

    same = observed(matrix(3000, 2), rng.beta(1, 8, 3000), reference)
    calm = compare(champ, same, spec, "fresh.parquet")
    assert calm.verdict == "no-drift" and DRIFT_EXITS[calm.verdict] == 0
    assert all(c.status != "drift" for c in calm.columns)

    moved = observed(matrix(3000, 3, shift=0.4, red=0.9), rng.beta(1, 8, 3000), reference)
    drift = compare(champ, moved, spec, "drifted.parquet")
    assert drift.verdict == "drift" and DRIFT_EXITS[drift.verdict] == 4
    assert {c.name for c in drift.drifted} == {"amount", "colour"}
    assert "prediction" not in {c.name for c in drift.drifted}
    assert drift.event_payload()["drifted"].keys() == {"amount", "colour"}

    few = compare(champ, observed(matrix(100, 4), raw[:100], reference), spec, "few.parquet")
    assert few.verdict == "insufficient" and DRIFT_EXITS[few.verdict] == 2
    assert "fewer than monitoring.min_rows=500" in few.message and few.columns == []


def test_labelled_metric_drop_is_drift_even_when_inputs_are_stable():
    rng = np.random.default_rng(5)
    reference = profile_of(matrix(5000, 1), rng.beta(1, 8, 5000), metric="roc_auc",
                           metric_value=0.90)
    champ = champion(reference)
    batch = matrix(3000, 2)
    ok = compare(champ, observed(batch, rng.beta(1, 8, 3000), reference, ("roc_auc", 0.88)),
                 MonitoringSpec(), "b")
    assert ok.verdict == "no-drift" and ok.metric_current == 0.88
    worse = compare(champ, observed(batch, rng.beta(1, 8, 3000), reference, ("roc_auc", 0.80)),
                    MonitoringSpec(), "b")
    assert worse.verdict == "drift" and worse.metric_drifted
    assert "roc_auc 0.8000 vs 0.9000" in worse.message


WIDE = {"code": [f"c{i:02d}" for i in range(50)]}


def wide(n: int, seed: int, skew: float = 0.0) -> pd.DataFrame:
    """A 50-category column, uniform (skew 0) or with the first ten categories favoured."""
    rng = np.random.default_rng(seed)
    weights = np.ones(50)
    weights[:10] += skew
    codes = rng.choice(WIDE["code"], size=n, p=weights / weights.sum())
    return pd.DataFrame({"code": pd.Categorical(codes, categories=WIDE["code"])})


def wide_champion(reference) -> Champion:
    spec = FeatureSpec(task="binary", target="y", features=["code"], categories=WIDE,
                       classes=["0", "1"])
    return Champion(name="m", version="1", alias="champion", booster=None, spec=spec,
                    profile=reference, sha256="x")


def test_a_small_batch_of_a_many_category_column_is_not_drift_from_noise():
    rng = np.random.default_rng(0)
    reference = reference_profile(wide(30_000, 1), rng.beta(1, 8, 30_000), WIDE, ["0", "1"],
                                  "binary", bins=10)
    champ, spec = wide_champion(reference), MonitoringSpec(psi_threshold=0.08)
    small = observed(wide(500, 2), rng.beta(1, 8, 500), reference)
    calm = compare(champ, small, spec, "small.parquet")
    code = next(c for c in calm.columns if c.name == "code")
    # noise alone puts PSI above the threshold here: the bound is what keeps it unmarked
    assert code.psi > spec.psi_threshold, code
    assert code.noise_bound > code.psi and code.status == "stable"
    assert calm.verdict == "no-drift", calm.message
    from tasks.reports.drift import drift_markdown, render_html

    shown = f"| code | {code.psi:.4f} | {code.noise_bound:.4f} | stable |"
    assert shown in drift_markdown(calm)
    assert f"<td>{code.noise_bound:.4f}</td>" in render_html(calm, b"", b"")

    big = observed(wide(20_000, 3, skew=2.0), rng.beta(1, 8, 20_000), reference)
    moved = compare(champ, big, spec, "big.parquet")
    code = next(c for c in moved.columns if c.name == "code")
    assert code.status == "drift" and code.psi > code.noise_bound > 0
    assert moved.verdict == "drift" and [c.name for c in moved.drifted] == ["code"]


def test_the_noise_bound_shrinks_with_sample_size_and_grows_with_bins():
    from tasks.batch.profiles import psi_noise_bound

    few, many = [100] * 10, [20] * 50  # 1000 reference rows either way
    assert psi_noise_bound(many, [10] * 50, 0.01) > psi_noise_bound(few, [50] * 10, 0.01)
    assert psi_noise_bound(few, [50] * 10, 0.01) > psi_noise_bound(few, [1000] * 10, 0.01)
    assert psi_noise_bound(few, [0] * 10, 0.01) == float("inf")
