"""The decision threshold of binary models: typed config, the rules on the validation split,
one table that applies it (evaluation, the pyfunc model, scoring) and the champion judged at its
own threshold."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from tasks.contracts import predictions
from tasks.core.config import parse_config
from tasks.core.decision import CostSpec, ThresholdSpec
from tasks.core.errors import ConfigError
from tasks.core.tasktypes import task_type
from tasks.training.gate import champion_labels
from tasks.training.metrics import evaluate_scores
from tasks.training.register import build_model_dir, input_example
from tasks.training.threshold import choose, with_threshold
from tasks.training.train import feature_spec, split_rows, train_model
from tasks.training.validate import validate_frame
from tests.conftest import config_yaml

Y = np.array([0, 0, 0, 0, 0, 0, 1, 0, 1, 1])
P = np.array([0.05, 0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.6, 0.7, 0.9])


def rule(**kw) -> ThresholdSpec:
    return ThresholdSpec(**kw)


def labels_at(cut: float) -> np.ndarray:
    return (cut <= P).astype(int)


def test_fixed_and_default():
    assert choose(Y, P, None) == predictions.DEFAULT_THRESHOLD
    assert choose(Y, P, rule(fixed=0.3)) == 0.3


def test_f1_picks_the_best_f1_cut_off():
    cut = choose(Y, P, rule(optimize="f1"))
    # brute force over every candidate: the chosen cut-off's F1 is the best one
    f1 = {c: 2 * (labels_at(c) & Y).sum() / (labels_at(c).sum() + Y.sum()) for c in P}
    assert cut == 0.45 and f1[cut] == max(f1.values())


def test_precision_at_recall_keeps_the_recall_and_maximises_precision():
    assert choose(Y, P, rule(precision_at_recall=1.0)) == 0.45   # all three positives caught
    assert choose(Y, P, rule(precision_at_recall=0.6)) == 0.7    # two of three, precision 1


def test_cost_weighs_missed_positives():
    cheap_misses = choose(Y, P, rule(cost=CostSpec(fp=1, fn=1)))
    dear_misses = choose(Y, P, rule(cost=CostSpec(fp=1, fn=20)))
    assert dear_misses <= cheap_misses
    assert (labels_at(dear_misses) & Y).sum() == 3  # misses nothing when a miss costs 20


def test_ties_count_as_one_cut_off():
    y = np.array([0, 1, 1, 0])
    p = np.array([0.5, 0.5, 0.8, 0.1])
    assert choose(y, p, rule(precision_at_recall=1.0)) == 0.5


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_a_threshold_on_a_non_binary_model_is_a_config_error_naming_the_key(task):
    with pytest.raises(ConfigError, match=rf"threshold: only binary models .* {task} model"):
        parse_config(config_yaml(task, extra="threshold: {fixed: 0.3}\n"))


@pytest.mark.parametrize("block, message", [
    ("threshold: {fixed: 0.3, optimize: f1}", "exactly one of"),
    ("threshold: {}", "exactly one of"),
    ("threshold: {optimize: recall}", "threshold.optimize"),
    ("threshold: {fixed: 1.5}", "threshold.fixed"),
    ("threshold: {cost: {fp: 1}}", "threshold.cost.fn"),
    ("threshold: {precision_at_recall: 0.8, typo: 1}", "threshold.typo"),
])
def test_bad_threshold_configs(block, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(config_yaml("binary", extra=block + "\n"))


def test_shipped_fraud_config_chooses_its_threshold():
    from pathlib import Path

    cfg = parse_config(Path("configs/models/fraud.yaml").read_text())
    assert cfg.threshold is not None and cfg.threshold.fixed is None


@pytest.fixture(scope="module")
def tuned(claims, tmp_path_factory):
    """A tiny binary model with its threshold chosen by cost on the validation rows."""
    cfg = parse_config(config_yaml("binary", n_trials=1,
                                   extra="threshold: {cost: {fp: 1, fn: 20}}\n"))
    spec = feature_spec(claims, validate_frame(claims, cfg), cfg)
    splits = split_rows(spec.encode_target(claims[cfg.target]), cfg.training, task_type("binary"))
    trained = train_model(claims, spec, splits, cfg.training, "cpu", "s", progress=lambda m: None)
    chosen = with_threshold(trained, claims.iloc[splits.valid], cfg.threshold)
    return cfg, splits, trained, chosen


def test_threshold_is_chosen_on_the_validation_split(tuned, claims):
    cfg, splits, trained, chosen = tuned
    spec = trained.feature_spec
    booster = trained.booster()

    def pick(rows):
        frame = claims.iloc[rows]
        return choose(spec.encode_target(frame[spec.target]),
                      booster.inplace_predict(spec.matrix(frame)), cfg.threshold)

    assert chosen.feature_spec.threshold == pick(splits.valid)
    assert chosen.feature_spec.threshold != pick(splits.test)  # the test split is not used
    assert chosen.feature_spec.threshold_rule == "least cost (fp 1, fn 20) on validation"
    assert chosen.booster_ubj == trained.booster_ubj


def test_evaluation_pyfunc_and_table_use_the_same_threshold(tuned, claims, tmp_path):
    _, splits, _, chosen = tuned
    spec = chosen.feature_spec
    test = claims.iloc[splits.test]
    scores = chosen.booster().inplace_predict(spec.matrix(test))
    report = evaluate_scores(spec, test, scores, [], 10)
    expected = (scores >= spec.threshold).astype(int)
    y = spec.encode_target(test[spec.target])
    assert report.threshold == spec.threshold
    assert report.metrics["recall"] == pytest.approx((expected & y).sum() / y.sum())
    model_dir = build_model_dir(chosen, input_example(test, spec, rows=len(test)),
                                tmp_path / "model", "# card\n")
    served = mlflow.pyfunc.load_model(str(model_dir)).predict(
        input_example(test, spec, rows=len(test)))
    assert (served["prediction"].astype(int).to_numpy() == expected).all()
    assert ((served["probability"] >= 0.5) != (served["probability"] >= spec.threshold)).any()


def test_the_champion_is_judged_at_its_own_threshold():
    from tasks.contracts.training import FeatureSpec

    spec = FeatureSpec(task="binary", target="t", features=["a"], categories={},
                       classes=["0", "1"], threshold=0.9)
    served = pd.DataFrame({"prediction": ["1", "0", "1"], "probability": [0.3, 0.2, 0.95]})
    assert champion_labels(served, spec).tolist() == [1, 0, 1]  # its labels, not 0.9 on ours


def test_a_champion_version_explains_itself_on_the_test_rows(tuned, claims, tmp_path):
    from tasks.contracts import explanations
    from tasks.training.gate import champion_attributions

    _, splits, _, chosen = tuned
    spec = chosen.feature_spec
    test = claims.iloc[splits.test]
    model_dir = build_model_dir(chosen, input_example(test, spec), tmp_path / "model", "# c\n")
    served = champion_attributions(mlflow.pyfunc.load_model(str(model_dir)), test)
    direct = explanations.mean_abs(
        explanations.contributions(chosen.booster(), spec.matrix(test)), spec.features, [])
    assert served.keys() == direct.keys() == {"all"}
    for f in spec.features:
        assert served["all"][f] == pytest.approx(direct["all"][f], rel=1e-5)


def test_the_champion_scores_a_large_test_set_in_pieces_with_the_same_results():
    from tasks.contracts.training import FeatureSpec
    from tasks.training.gate import champion_predictions

    spec = FeatureSpec(task="binary", target="t", features=["a"], categories={},
                       classes=["0", "1"], threshold=0.5)

    class Served:  # a pyfunc model's predict: a prediction frame per input frame
        def predict(self, frame):
            assert "t" not in frame.columns  # the target never reaches the champion
            return spec.predictions_frame(frame["a"].to_numpy())

    test = pd.DataFrame({"a": np.linspace(0, 1, 103), "t": ["1"] * 103})
    whole = champion_predictions(Served(), test, "t", spec, rows=len(test))
    pieces = champion_predictions(Served(), test, "t", spec, rows=10)
    assert pieces[0].tolist() == whole[0].tolist() and len(pieces[0]) == 103
    assert pieces[1].tolist() == whole[1].tolist() == (test["a"] >= 0.5).astype(int).tolist()
