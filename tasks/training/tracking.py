"""The MLflow run of a training execution: what it was given (params, validation report) and
what it produced (metrics, plots, trials, the gate's decision), plus the Prefect summaries."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from tasks.adapters.mlflow_registry import Registry
from tasks.contracts.explanations import ALL
from tasks.contracts.training import (
    ChampionScore,
    EvalReport,
    GateDecision,
    RunPlan,
    TrainResult,
    ValidationReport,
    tracking_key,
)
from tasks.core.config import ModelConfig
from tasks.core.steps import artifact_key, step
from tasks.reports.artifacts import publish_images
from tasks.reports.explanations import SHAP_PREFIX
from tasks.reports.training import explanation_markdown, gate_markdown, metric_rows
from tasks.reports.validation import validation_markdown


def flat_params(cfg: ModelConfig) -> dict[str, object]:
    return {
        "task": cfg.task, "target": cfg.target, "data.source": cfg.data.source,
        **{f"training.{k}": v for k, v in cfg.training.model_dump().items()},
        **{f"gate.{k}": v for k, v in cfg.gate.model_dump().items()},
    }


def flat_metrics(report: EvalReport, prefix: str = "test_") -> dict[str, float]:
    out = {f"{prefix}{k}": v for k, v in report.metrics.items()}
    for col, values in report.slices.items():
        for value, metrics in values.items():
            out.update({tracking_key("slice", col, value, k): v
                        for k, v in metrics.items() if k != "rows"})
    return out


def shap_metrics(attributions: dict[str, dict[str, float]], prefix: str = SHAP_PREFIX
                 ) -> dict[str, float]:
    """The whole model's mean |SHAP| per feature as run metrics (`shap.<feature>`)."""
    return {tracking_key(prefix, f): v for f, v in attributions.get(ALL, {}).items()}


@contextlib.contextmanager
def training_run(registry: Registry, cfg: ModelConfig, plan: RunPlan,
                 validation: ValidationReport) -> Iterator[str]:
    """The MLflow run of this training: FINISHED when the block completes, FAILED otherwise
    (a gate rejection included)."""
    with registry.run(registry.training_experiment(cfg.name), f"{cfg.name}-{plan.run_key[:8]}",
                      plan.tags) as run_id:
        registry.log_run(run_id, params={**flat_params(cfg), "device": plan.device,
                                         "rows": validation.rows,
                                         "features": len(validation.features)})
        registry.log_text(run_id, validation_markdown(validation), "validation/report.md")
        yield run_id


@step("log-results")
def log_results(registry: Registry, run_id: str, cfg: ModelConfig, trained: TrainResult,
                report: EvalReport, champion: ChampionScore, decision: GateDecision) -> None:
    """Metrics, plots, trials and the gate decision to MLflow; a summary to Prefect."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    metrics = flat_metrics(report)
    if champion.report is not None:
        metrics.update(flat_metrics(champion.report, prefix="champion_"))
    metrics.update({"best_valid_score": trained.best_value,
                    "best_iteration": trained.best_iteration,
                    "trials_pruned": trained.n_pruned, "train_seconds": trained.duration_s,
                    "gate_passed": float(decision.passed)})
    metrics.update(shap_metrics(report.attributions))
    if champion.report is not None:
        metrics.update(shap_metrics(champion.report.attributions, prefix="champion_shap"))
    params: dict[str, object] = {f"best.{k}": v for k, v in trained.params.items()}
    # which champion the gate judged against: an approver later sees when that is not today's
    params["gate_champion_version"] = decision.champion_version or "none"
    spec = trained.feature_spec
    if spec.threshold is not None:
        params.update({"decision_threshold": spec.threshold, "threshold_rule": spec.threshold_rule})
    registry.log_run(run_id, params=params, metrics=metrics)
    registry.log_files(run_id, report.plots, "plots")
    publish_images(registry, run_id, [f"plots/{Path(p).name}" for p in report.plots],
                   key=cfg.name, what=f"{cfg.name} evaluation")
    registry.log_text(run_id, json.dumps(decision.model_dump(), indent=2), "gate/decision.json")
    registry.log_text(run_id, json.dumps(report.attributions, indent=2),
                      "explanations/mean_abs_shap.json")
    registry.log_text(run_id, explanation_markdown(report, champion.report),
                      "explanations/mean_abs_shap.md")
    registry.log_text(run_id, json.dumps([t.model_dump() for t in trained.trials], indent=2),
                      "training/trials.json")
    create_table_artifact(key=artifact_key(cfg.name, "metrics"),
                          table=metric_rows(report, champion.report),
                          description=f"{cfg.name} test metrics vs champion")
    create_markdown_artifact(key=artifact_key(cfg.name, "gate"),
                             markdown=gate_markdown(cfg.name, decision, registry.run_url(run_id)),
                             description=f"Gate decision for {cfg.name}")
