"""What a training run says about itself: metrics beside the champion's, the gate's checks,
and the model card stored with the version."""

from __future__ import annotations

from tasks.contracts.explanations import ALL, EXPLAIN_ROWS
from tasks.contracts.training import EvalReport, GateDecision, TrainResult, ValidationReport
from tasks.core.config import ModelConfig
from tasks.reports.explanations import (
    attribution_table,
    change_line,
    per_class_table,
    threshold_line,
    top_line,
)
from tasks.reports.format import delta, fmt


def metric_rows(report: EvalReport, champion: EvalReport | None) -> list[dict[str, object]]:
    """One row per test metric: candidate, champion and the change, rounded alike."""
    rows: list[dict[str, object]] = []
    for name, value in report.metrics.items():
        old = champion.metrics.get(name) if champion else None
        rows.append({"metric": name, "candidate": fmt(value), "champion": fmt(old),
                     "change": delta(name, value, old)})  # strings: 0.8700 stays 0.8700
    return rows


def gate_markdown(model: str, decision: GateDecision, run_url: str) -> str:
    mlflow = f"[MLflow run]({run_url})" if run_url.startswith("http") else f"MLflow: {run_url}"
    lines = [f"# {model}: gate {decision.summary()}", "", mlflow, "",
             *[f"- {'ok' if c.passed else 'FAIL'}: {c.detail}" for c in decision.checks]]
    return "\n".join(lines) + "\n"


def explanation_markdown(report: EvalReport, champion: EvalReport | None) -> str:
    """Mean |SHAP| per feature on the test set (per class for multiclass) beside the champion."""
    new = report.attributions.get(ALL, {})
    old = champion.attributions.get(ALL) if champion else None
    lines = ["## Explanations (tree SHAP: mean |SHAP| on the test set, at most "
             f"{EXPLAIN_ROWS:,} rows)", "",
             f"- top features: {top_line(new)}",
             f"- against the champion: {change_line(new, old)}", "",
             *attribution_table(new, old)]
    if len(report.attributions) > 1:
        lines += ["", "Per class:", "", *per_class_table(report.attributions)]
    return "\n".join(lines) + "\n"


def model_card(cfg: ModelConfig, trained: TrainResult, report: EvalReport,
               decision: GateDecision, validation: ValidationReport, tags: dict[str, str],
               champion: EvalReport | None = None) -> str:
    spec = trained.feature_spec
    lines = [
        f"# Model card: {cfg.name}", "",
        f"- task: {cfg.task}, target `{cfg.target}`",
        f"- features ({len(trained.feature_spec.features)}): "
        + ", ".join(trained.feature_spec.features),
        f"- training rows: {validation.rows} (test {report.test_rows}), device {trained.device}",
        f"- gate: {decision.summary()}",
        *([f"- {threshold_line(spec.threshold, spec.threshold_rule)}; the test metrics' labels "
           "use it"] if spec.threshold is not None else []),
        "", "## Test metrics", "", "| metric | value |", "|---|---|",
        *[f"| {k} | {fmt(v)} |" for k, v in report.metrics.items()],
    ]
    rows = report.slice_table(report.primary_metric)
    if rows:
        lines += ["", f"## {report.primary_metric} per slice", "", "| slice | value | rows |",
                  "|---|---|---|", *[f"| {c}={v} | {fmt(m)} | {n} |" for c, v, m, n in rows]]
    lines += ["", explanation_markdown(report, champion).rstrip()]
    lines += ["", "## Hyperparameters", "", *[f"- {k}: {v}" for k, v in trained.params.items()],
              f"- rounds: {trained.best_iteration + 1}",
              "", "## Lineage and compliance", "", *[f"- {k}: {v}" for k, v in tags.items()]]
    return "\n".join(lines) + "\n"
