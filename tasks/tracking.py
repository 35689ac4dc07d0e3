"""Tracking: the MLflow run of a pipeline execution and the Prefect artifacts people read."""

from __future__ import annotations

import json
import re

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from tasks.adapters.mlflow_registry import ModelVersionRef, Registry
from tasks.adapters.registries import open_registry
from tasks.core.config import ModelConfig
from tasks.core.device import select_device
from tasks.core.lineage import code_hash, lineage_tags
from tasks.core.settings import Settings
from tasks.evaluate import EvalReport, evaluate_scores, scores_from_predictions
from tasks.gate import GateDecision
from tasks.reuse import run_key_for
from tasks.train import FeatureSpec, TrainResult
from tasks.validate import ValidationReport

CHAMPION = "champion"


class RunPlan(BaseModel):
    """What this execution is: its run key, device, study and an earlier identical version."""

    run_key: str
    device: str
    study_name: str
    plot_dir: str
    tags: dict[str, str]
    existing_version: str | None


class ChampionScore(BaseModel):
    version: str | None = None
    report: EvalReport | None = None
    error: str | None = None


def artifact_key(*parts: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


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
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", value)
            out.update({f"slice.{col}.{safe}.{k}": v for k, v in metrics.items() if k != "rows"})
    return out


def current_flow_run_id() -> str | None:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else None


@task(name="connect-tracking", cache_policy=NO_CACHE)
def connect(settings: Settings) -> Registry:
    return open_registry(settings)


@task(name="publish-validation", cache_policy=NO_CACHE)
def publish_validation(report: ValidationReport, cfg: ModelConfig, settings: Settings) -> str:
    """Write the validation report to a file and a Prefect artifact, pass or fail."""
    from prefect.artifacts import create_markdown_artifact

    path = settings.home / "reports" / cfg.name / "validation.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    markdown = report.to_markdown()
    path.write_text(markdown)
    create_markdown_artifact(key=artifact_key(cfg.name, "validation"), markdown=markdown,
                             description=f"Validation report for {cfg.name}")
    return str(path)


@task(name="plan-run", cache_policy=NO_CACHE)
def plan_run(cfg: ModelConfig, fingerprint: str, settings: Settings, registry: Registry
             ) -> RunPlan:
    """Derive the run key from data, config, code and device; find an identical earlier version."""
    device = select_device(settings.device)
    code = code_hash()
    key = run_key_for(cfg, fingerprint, device, code)
    existing = registry.find_version(cfg.name, key)
    work = settings.cache_dir / cfg.name / key[:16]
    return RunPlan(
        run_key=key, device=device, study_name=f"{cfg.name}-{key[:16]}",
        plot_dir=str(work / "plots"),
        tags=lineage_tags(fingerprint, cfg.config_hash(), code, key,
                          current_flow_run_id()),
        existing_version=existing.version if existing else None,
    )


@task(name="open-run", cache_policy=NO_CACHE)
def open_run(registry: Registry, cfg: ModelConfig, plan: RunPlan, validation: ValidationReport
             ) -> str:
    run_id = registry.start_run(cfg.name, f"{cfg.name}-{plan.run_key[:8]}", plan.tags)
    registry.log_run(run_id, params={**flat_params(cfg), "device": plan.device,
                                     "rows": validation.rows,
                                     "features": len(validation.features)})
    registry.log_text(run_id, validation.to_markdown(), "validation/report.md")
    return run_id


@task(name="score-champion", cache_policy=NO_CACHE)
def score_champion(registry: Registry, cfg: ModelConfig, test: pd.DataFrame,
                   spec: FeatureSpec) -> ChampionScore:
    """Re-score the current champion on this run's test set, so the gate compares like with like."""
    ref: ModelVersionRef | None = registry.version_by_alias(cfg.name, CHAMPION)
    if ref is None:
        return ChampionScore()
    try:
        model = registry.load_pyfunc(ref.uri)
        predictions = model.predict(test.drop(columns=[cfg.target]))
        scores = scores_from_predictions(predictions, spec)
    except Exception as exc:  # any failure to re-score is a gate finding, not a crash
        return ChampionScore(version=ref.version, error=str(exc).splitlines()[0][:300])
    report = evaluate_scores(spec, test, scores, cfg.slices, cfg.gate.min_slice_rows)
    return ChampionScore(version=ref.version, report=report)


@task(name="log-results", cache_policy=NO_CACHE)
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
    registry.log_run(run_id, params={f"best.{k}": v for k, v in trained.params.items()},
                     metrics=metrics)
    registry.log_files(run_id, report.plots, "plots")
    registry.log_text(run_id, json.dumps(decision.model_dump(), indent=2), "gate/decision.json")
    registry.log_text(run_id, json.dumps([t.model_dump() for t in trained.trials], indent=2),
                      "training/trials.json")

    rows = [{"metric": k, "candidate": round(v, 5),
             "champion": round(champion.report.metrics[k], 5)
             if champion.report and k in champion.report.metrics else None}
            for k, v in report.metrics.items()]
    create_table_artifact(key=artifact_key(cfg.name, "metrics"), table=rows,
                          description=f"{cfg.name} test metrics vs champion")
    md = [f"# {cfg.name}: gate {decision.summary()}", "",
          f"MLflow: {registry.run_url(run_id)}", "",
          *[f"- {'ok' if c.passed else 'FAIL'}: {c.detail}" for c in decision.checks]]
    create_markdown_artifact(key=artifact_key(cfg.name, "gate"), markdown="\n".join(md),
                             description=f"Gate decision for {cfg.name}")


@task(name="close-run", cache_policy=NO_CACHE)
def close_run(registry: Registry, run_id: str, status: str) -> None:
    registry.end_run(run_id, status)


@task(name="reuse-version", cache_policy=NO_CACHE)
def reused_metrics(registry: Registry, cfg: ModelConfig, version: str) -> tuple[str | None,
                                                                                 float | None]:
    """Metrics of an identical earlier version, so a re-run reports without retraining."""
    from prefect.logging import get_run_logger

    ref = registry.find_version_by_number(cfg.name, version)
    get_run_logger().info("unchanged data, config and code: reusing %s v%s", cfg.name, version)
    metrics = registry.run_metrics(ref.run_id) if ref.run_id else {}
    return ref.run_id, metrics.get(f"test_{cfg.gate.metric}")
