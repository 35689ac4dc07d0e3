"""The training pipeline: validate → train → evaluate → gate → register."""

from __future__ import annotations

from datetime import date

from prefect import flow
from pydantic import BaseModel

from flows.deploy import deploy_model
from tasks.adapters.slack import notify_flow_failure
from tasks.core.config import load_config
from tasks.core.errors import GateRejected
from tasks.core.settings import Settings
from tasks.core.tasktypes import task_type
from tasks.data import load_data
from tasks.deploy import DeployResult
from tasks.evaluate import evaluate
from tasks.gate import gate
from tasks.gitlab_report import report_merge_request, report_reused
from tasks.profile import profile_training_data
from tasks.register import input_example, model_card, register
from tasks.tracking import (
    close_run,
    connect,
    log_results,
    open_run,
    plan_run,
    publish_validation,
    reused_metrics,
    score_champion,
)
from tasks.train import feature_spec, split_rows, train
from tasks.validate import ensure_valid, validate


class PipelineResult(BaseModel):
    model: str
    version: str
    metric: str
    value: float | None
    gate: str
    run_id: str | None
    reused: bool
    deployment: DeployResult | None = None


@flow(name="training-pipeline", log_prints=True, on_failure=[notify_flow_failure],
      on_crashed=[notify_flow_failure])
def training_pipeline(model: str, deploy: bool = False, approve_as: str | None = None,
                      comment: str = "", wait_for_approval: bool = True,
                      as_of: date | None = None) -> PipelineResult:
    """Train one configured model (a name under configs/models or a YAML path) on its data as of
    a date (default: all of it); with deploy, stage it, get approval and promote it."""
    result = train_and_register(model, as_of)
    if deploy:
        result.deployment = deploy_model(model, result.version, approve_as, comment,
                                         wait_for_approval)
    return result


def train_and_register(model: str, as_of: date | None = None) -> PipelineResult:
    """validate → train → evaluate → gate → register."""
    settings = Settings.from_env()
    cfg = load_config(model, settings.config_dir)
    registry = connect(settings)
    data = load_data(cfg.data, as_of)
    validation = validate(data.frame, cfg)
    publish_validation(validation, cfg, settings)
    ensure_valid(validation)

    plan = plan_run(cfg, data.fingerprint, settings, registry)
    if plan.existing_version:
        run_id, value = reused_metrics(registry, cfg, plan.existing_version)
        report_reused(registry, cfg.name, plan.existing_version, run_id)
        return PipelineResult(model=cfg.name, version=plan.existing_version,
                              metric=cfg.gate.metric, value=value, gate="passed (earlier run)",
                              run_id=run_id, reused=True)

    run_id = open_run(registry, cfg, plan, validation)
    try:
        spec = feature_spec(data.frame, validation, cfg)
        splits = split_rows(spec.encode_target(data.frame[cfg.target]), cfg.training,
                            task_type(cfg.task))
        trained = train(data.frame, spec, splits, cfg.training, plan.device, plan.study_name,
                        settings.optuna_storage)
        test = data.frame.iloc[splits.test]
        report = evaluate(data.frame, splits.test, trained, cfg.slices,
                          cfg.gate.min_slice_rows, plan.plot_dir)
        champion = score_champion(registry, cfg, test, spec)
        decision = gate(report, champion.report, cfg.gate, champion.version, champion.error)
        log_results(registry, run_id, cfg, trained, report, champion, decision)
        report_merge_request(cfg.name, report, champion.report, champion.version, decision,
                             registry.run_url(run_id))
        if not decision.passed:
            raise GateRejected(f"{cfg.name} gate {decision.summary()}")
        card = model_card(cfg, trained, report, decision, validation, plan.tags)
        profile = profile_training_data(data.frame, splits.train, trained, report,
                                        cfg.monitoring.bins)
        registration = register(registry, cfg, run_id, trained, decision,
                                input_example(test, spec), card, plan.tags, profile)
    except BaseException:
        close_run(registry, run_id, "FAILED")
        raise
    close_run(registry, run_id, "FINISHED")
    return PipelineResult(model=cfg.name, version=registration.version, metric=cfg.gate.metric,
                          value=decision.value, gate=decision.summary(), run_id=run_id,
                          reused=False)
