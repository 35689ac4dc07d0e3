"""What approvers read: the model card, the approval form and the MR comment show the top
features, which features gained or lost weight against the champion, and the threshold."""

from __future__ import annotations

from tasks.contracts.release import SmokeReport
from tasks.contracts.training import (
    EvalReport,
    FeatureSpec,
    GateCheck,
    GateDecision,
    TrainResult,
    ValidationReport,
)
from tasks.core.config import parse_config
from tasks.reports.approval import approval_markdown
from tasks.reports.merge_request import merge_request_comment
from tasks.reports.training import model_card
from tasks.training.tracking import shap_metrics
from tests.conftest import config_yaml

NEW = {"all": {"claim_amount": 0.6, "days_to_report": 0.3, "region": 0.1}}
OLD = {"all": {"claim_amount": 0.3, "days_to_report": 0.3, "region": 0.4}}


def reports() -> tuple[EvalReport, EvalReport, GateDecision]:
    report = EvalReport(primary_metric="roc_auc", metrics={"roc_auc": 0.9, "recall": 0.7},
                        slices={}, test_rows=100, threshold=0.0812,
                        threshold_rule="least cost (fp 1, fn 20) on validation", attributions=NEW)
    champion = EvalReport(primary_metric="roc_auc", metrics={"roc_auc": 0.89, "recall": 0.6},
                          slices={}, test_rows=100, attributions=OLD)
    decision = GateDecision(passed=True, metric="roc_auc", value=0.9, champion_value=0.89,
                            champion_version="4",
                            checks=[GateCheck(name="floor", passed=True, detail="ok")])
    return report, champion, decision


def test_merge_request_comment_shows_top_features_changes_and_threshold():
    report, champion, decision = reports()
    text = merge_request_comment("fraud", report, champion, "4", decision, "http://mlflow/x",
                                 None, [])
    assert "**Top features** (share of mean |SHAP| on the test set): claim_amount 60%, " \
           "days_to_report 30%, region 10%" in text
    assert "gained: claim_amount +30.0 pp; lost: region -30.0 pp" in text
    assert "decision threshold 0.0812 (least cost (fp 1, fn 20) on validation" in text


def test_model_card_has_an_explanation_table_and_the_threshold():
    report, champion, decision = reports()
    spec = FeatureSpec(task="binary", target="is_fraud", features=list(NEW["all"]),
                       categories={}, classes=["0", "1"], threshold=0.0812,
                       threshold_rule="least cost (fp 1, fn 20) on validation")
    trained = TrainResult(booster_ubj="", feature_spec=spec, params={"max_depth": 3},
                          best_iteration=9, best_value=0.2, eval_metric="logloss", device="cpu",
                          trials=[], duration_s=1.0)
    validation = ValidationReport(rows=500, target="is_fraud", features=spec.features,
                                  categorical=[], classes=["0", "1"], class_counts={},
                                  errors=[], warnings=[], columns=[])
    card = model_card(parse_config(config_yaml()), trained, report, decision, validation, {},
                      champion=champion)
    assert "- decision threshold 0.0812 (least cost (fp 1, fn 20) on validation" in card
    assert "## Explanations (tree SHAP: mean |SHAP| on the test set, at most 5,000 rows)" in card
    assert "| claim_amount | 0.6000 | 60.0% | 30.0% |" in card
    assert "lost: region -30.0 pp" in card
    # the registry description (the card up to the hyperparameters) keeps the explanations
    assert "Explanations" in card.split("\n## Hyperparameters")[0]


def test_approval_form_reads_explanations_and_threshold_from_the_run():
    report, champion, _ = reports()
    metrics = {"test_roc_auc": 0.9, "champion_roc_auc": 0.89,
               **shap_metrics(report.attributions),
               **shap_metrics(champion.attributions, prefix="champion_shap")}
    text = approval_markdown(
        model="fraud", version="5", champion="4",
        tags={"gate_metric": "roc_auc", "decision_threshold": "0.0812",
              "threshold_rule": "least cost (fp 1, fn 20) on validation"},
        metrics=metrics, params={}, run_url=None, smoke=SmokeReport(passed=True, checks=[]),
        approvers=None)
    assert "Top features (share of mean |SHAP| on the test set): claim_amount 60%" in text
    assert "Against the champion: gained: claim_amount +30.0 pp; lost: region -30.0 pp." in text
    assert "Decision: decision threshold 0.0812 (least cost" in text
    assert "shap" not in text.split("| metric |")[1].split("\n\n")[0]  # not in the metric table


def test_reports_without_explanations_or_threshold_say_nothing_about_them():
    report, _, decision = reports()
    bare = report.model_copy(update={"attributions": {}, "threshold": None})
    text = merge_request_comment("damage", bare, None, None, decision, "x", None, [])
    assert "Top features" not in text and "threshold" not in text
