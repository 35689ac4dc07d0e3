"""Tree SHAP from XGBoost itself: native categories (unseen ones and missing values included),
mean |SHAP| per task type, share changes, and `--explain K` in batch scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from tasks.batch.champion import Champion
from tasks.batch.scoring import score_batches
from tasks.contracts import explanations
from tasks.contracts.training import FeatureSpec
from tasks.core.errors import ScoringError
from tasks.reports.explanations import change_line, top_line
from tasks.training.synthetic import generate_claims

FEATURES = ["region", "vehicle_type", "claim_channel", "policy_tenure_months", "customer_age",
            "days_to_report", "police_report", "claim_amount", "repair_estimate"]
CATEGORIES = {"region": ["central", "east", "north", "south", "west"],
              "vehicle_type": ["motorcycle", "sedan", "suv", "truck", "van"],
              "claim_channel": ["agent", "online", "phone"]}
SETUP = {"binary": ("is_fraud", {"objective": "binary:logistic"}, ["0", "1"]),
         "multiclass": ("damage_severity", {"objective": "multi:softprob", "num_class": 4},
                        ["minor", "moderate", "severe", "total_loss"]),
         "regression": ("settlement_amount", {"objective": "reg:squarederror"}, [])}


def make_champion(task: str) -> Champion:
    target, params, classes = SETUP[task]
    spec = FeatureSpec(task=task, target=target, features=FEATURES, categories=CATEGORIES,
                       classes=classes)
    train = generate_claims(3000, seed=1)
    booster = xgb.train({**params, "tree_method": "hist", "max_depth": 3},
                        xgb.DMatrix(spec.matrix(train), label=spec.encode_target(train[target]),
                                    enable_categorical=True), 30)
    return Champion(name="m", version="1", alias="champion", booster=booster, spec=spec,
                    profile=None, sha256="x")


@pytest.fixture(scope="module")
def champions() -> dict[str, Champion]:
    return {task: make_champion(task) for task in SETUP}


def awkward_rows() -> pd.DataFrame:
    """Rows with an unseen category, missing categories and missing numbers."""
    frame = generate_claims(40, seed=9)
    frame.loc[:4, "region"] = "atlantis"           # never seen in training
    frame.loc[5:9, "vehicle_type"] = None          # missing category
    frame.loc[10:14, "claim_amount"] = np.nan      # missing number
    return frame


@pytest.mark.parametrize("task", list(SETUP))
def test_contributions_add_up_to_the_margin_with_unseen_and_missing_values(champions, task):
    champion = champions[task]
    matrix = champion.spec.matrix(awkward_rows())
    assert matrix["region"].iloc[:5].isna().all()  # the unseen category is coded as missing
    contribs = explanations.contributions(champion.booster, matrix)
    margin = champion.booster.predict(xgb.DMatrix(matrix, enable_categorical=True),
                                      output_margin=True)
    assert np.isfinite(contribs).all()
    np.testing.assert_allclose(contribs.sum(axis=-1), margin, rtol=1e-4, atol=1e-3)
    means = explanations.mean_abs(contribs, FEATURES, champion.spec.classes)
    per_class = champion.spec.classes if task == "multiclass" else []
    expected_keys = {explanations.ALL, *per_class}
    assert set(means) == expected_keys
    assert all(set(m) == set(FEATURES) for m in means.values())
    assert sum(means[explanations.ALL].values()) > 0


def test_multiclass_attributions_are_per_class_and_average_to_all(champions):
    champion = champions["multiclass"]
    contribs = explanations.contributions(champion.booster,
                                          champion.spec.matrix(generate_claims(200, seed=4)))
    means = explanations.mean_abs(contribs, FEATURES, champion.spec.classes)
    for f in FEATURES:
        per_class = [means[c][f] for c in champion.spec.classes]
        assert means[explanations.ALL][f] == pytest.approx(np.mean(per_class))
    assert len({tuple(means[c].values()) for c in champion.spec.classes}) == 4


def test_shares_and_changes_against_a_champion():
    new = {"a": 6.0, "b": 3.0, "c": 1.0}
    old = {"a": 3.0, "b": 3.0, "c": 4.0}
    assert explanations.shares(new) == pytest.approx({"a": 0.6, "b": 0.3, "c": 0.1})
    changes = explanations.share_changes(new, old)
    assert changes == pytest.approx({"a": 0.3, "b": 0.0, "c": -0.3})
    assert top_line(new, 2) == "a 60%, b 30%"
    assert change_line(new, old) == "gained: a +30.0 pp; lost: c -30.0 pp"
    assert change_line(new, None) == "no champion explanations to compare with"
    assert explanations.shares({"a": 0.0}) == {"a": 0.0}


@pytest.mark.parametrize("task", list(SETUP))
def test_score_explain_writes_the_top_k_contributions_batch_by_batch(champions, task, tmp_path):
    champion = champions[task]
    claims = awkward_rows()
    src = tmp_path / "claims.parquet"
    claims.to_parquet(src)
    score_batches(champion, str(src), str(tmp_path / "out.parquet"), batch_rows=7, explain=3)
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert explanations.column_names(3) == [c for c in out.columns if c.startswith("explain_")]
    contribs = explanations.contributions(champion.booster, champion.spec.matrix(claims))
    if task == "multiclass":
        predicted = out["prediction"].astype(str).map(
            {c: i for i, c in enumerate(champion.spec.classes)}).to_numpy()
        contribs = contribs[np.arange(len(claims)), predicted]
    for row in range(len(claims)):
        values = dict(zip(FEATURES, contribs[row, :-1], strict=True))
        best = sorted(values.items(), key=lambda kv: -abs(kv[1]))[:3]
        got = [(out.loc[row, f"explain_{i}_feature"], out.loc[row, f"explain_{i}_contribution"])
               for i in (1, 2, 3)]
        assert [abs(v) for _, v in got] == pytest.approx([abs(v) for _, v in best], rel=1e-5)
        for name, value in got:
            assert value == pytest.approx(values[name], rel=1e-5)


def test_plain_scoring_has_no_explanation_columns(champions, tmp_path):
    src = tmp_path / "claims.parquet"
    generate_claims(20, seed=2).to_parquet(src)
    score_batches(champions["binary"], str(src), str(tmp_path / "out.parquet"))
    assert not [c for c in pd.read_parquet(tmp_path / "out.parquet").columns
                if c.startswith("explain_")]


@pytest.mark.parametrize("k", [len(FEATURES) + 1, 100])
def test_explain_more_than_the_feature_count_is_refused_before_writing(champions, tmp_path, k):
    src = tmp_path / "claims.parquet"
    generate_claims(20, seed=2).to_parquet(src)
    with pytest.raises(ScoringError, match=f"--explain {k}: the model has 9 features") as err:
        score_batches(champions["binary"], str(src), str(tmp_path / "out.parquet"), explain=k)
    assert err.value.exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["claims.parquet"]


def test_explain_as_many_as_the_features_is_allowed(champions, tmp_path):
    src = tmp_path / "claims.parquet"
    generate_claims(20, seed=2).to_parquet(src)
    score_batches(champions["binary"], str(src), str(tmp_path / "out.parquet"),
                  explain=len(FEATURES))
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert set(out.loc[0, [f"explain_{i + 1}_feature" for i in range(9)]]) == set(FEATURES)
