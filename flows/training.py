"""The training pipeline: validate → train → evaluate → gate → register (→ deploy)."""

from __future__ import annotations

from datetime import date

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.runtime import deployment

from flows.deploy import deploy_model
from tasks.adapters.registries import connect_writes, read_tracking
from tasks.adapters.slack import notify_flow_failure
from tasks.batch.profiles import profile_training_data
from tasks.contracts.release import PipelineResult
from tasks.core.config import load_config
from tasks.core.gpu import gpu_slot
from tasks.core.heartbeats import beating
from tasks.core.outcomes import outcome_of
from tasks.core.parameters import ModelName
from tasks.core.policy_config import require_compliant_config
from tasks.core.runnames import run_name
from tasks.core.runtime import Runtime
from tasks.core.settings import Settings
from tasks.release.handoff import start_deploy_run
from tasks.reports.gitlab import report_merge_request, report_reused
from tasks.reports.training import model_card
from tasks.reports.validation import publish_validation
from tasks.training.batches import TEST, TRAIN, VALID
from tasks.training.data import load_data
from tasks.training.evaluate import compact_test, evaluate
from tasks.training.gate import ensure_passed, gate, score_champion
from tasks.training.hpo import tune_with_workers, with_tuning_lineage
from tasks.training.planning import plan_run, reused_metrics
from tasks.training.register import VersionFiles, input_example, register
from tasks.training.threshold import choose_threshold
from tasks.training.tracking import log_results, training_run
from tasks.training.train import feature_spec, splits_of, train, train_streamed
from tasks.training.validate import ensure_valid, validate
from tasks.training.workers import require_storage


@flow(name="training-pipeline", flow_run_name=run_name("train"), log_prints=True,
      on_failure=[notify_flow_failure], on_crashed=[notify_flow_failure])
@beating
def training_pipeline(model: ModelName, deploy: bool = False, comment: str = "",
                      wait_for_approval: bool = True, as_of: date | None = None
                      ) -> PipelineResult | State[PipelineResult]:
    """Train one configured model on its data as of a date; with deploy, stage it, get approval
    and promote it.

    Args:
        model: A model configured under configs/models (its name), or a YAML path.
        deploy: Also deploy the version: staging, approval, production.
        comment: Kept with the approval in the audit trail.
        wait_for_approval: Wait for a person's approval (False stops after staging when nobody
            can answer, e.g. on a temporary local server).
        as_of: Leave out rows dated after this day (backfills); default: all the data.
    """
    runtime = Runtime(Settings.from_env())  # read once: one policy and one key for the run
    result = outcome_of(train_and_register, model=model, runtime=runtime, as_of=as_of)
    if isinstance(result, State):  # the gate rejected it: the run ends Failed("GateRejected")
        return result
    handed = None
    if deploy and deployment.get_id():  # on a worker: a deploy run waits, holding no runner
        handed = start_deploy_run(model=result.model, version=result.version,
                                  prefect_ui=runtime.settings.prefect_ui_url, comment=comment)
    elif deploy:
        handed = outcome_of(deploy_model, model=model, version=result.version, comment=comment,
                            wait=wait_for_approval)
    if isinstance(handed, State):  # a person rejected it: the run ends Failed("Rejected")
        return handed
    return result.model_copy(update={"deployment": handed})


def train_and_register(model: str, runtime: Runtime, as_of: date | None = None
                       ) -> PipelineResult:
    """validate → train → evaluate → gate → register."""
    settings = runtime.settings
    cfg = load_config(model, settings.config_dir)
    require_compliant_config(runtime.policy, cfg.name, cfg.registry)
    # reads over MLflow's REST API where a server serves the store: a reused run imports no MLflow
    reads = read_tracking(settings)
    data = load_data(spec=cfg.data, snowflake=settings.snowflake, as_of=as_of,
                     training=cfg.training, target=cfg.target)
    require_storage(workers=cfg.training.workers, storage=settings.optuna_storage,
                    streamed=data.streamed)
    validation = validate(df=data.frame, cfg=cfg, table=data.table)
    publish_validation(report=validation, model=cfg.name, reports_dir=settings.home / "reports")
    ensure_valid(validation)

    plan = plan_run(cfg=cfg, fingerprint=data.fingerprint, settings=settings, registry=reads,
                    as_of=as_of, data_at=data.at)
    if plan.existing_version:
        run_id, value = reused_metrics(registry=reads, cfg=cfg, version=plan.existing_version)
        report_reused(registry=reads, model=cfg.name, version=plan.existing_version,
                      run_id=run_id, settings=settings, alias=cfg.deploy.production.alias)
        return PipelineResult(model=cfg.name, version=plan.existing_version,
                              metric=cfg.gate.metric, value=value, gate="passed (earlier run)",
                              run_id=run_id, reused=True)

    registry = connect_writes(reads=reads, settings=settings)
    with training_run(registry, cfg, plan, validation) as run_id:
        spec = feature_spec(data.frame, validation, cfg)
        splits = splits_of(data.frame, spec, cfg.training, cfg.data.key)
        if splits is None:  # streamed in bounded batches, each row's split hashed (docs/large-tables.md)
            with gpu_slot(plan.device):  # one `gpu` slot while training on CUDA, none on CPU
                trained = train_streamed(table=data.table, spec=spec, training=cfg.training,
                                         device=plan.device, study_name=plan.study_name,
                                         storage=settings.optuna_storage,
                                         cache_root=settings.home / "xgb-cache")
            trained = choose_threshold(df=None, valid_rows=None, trained=trained,
                                       rule=cfg.threshold,
                                       valid_batches=data.table.frames(VALID, "threshold"))
            test = compact_test(data.table.frames(TEST, "test set"), spec, cfg.slices)
            train_rows, train_passes = None, data.table.passes(TRAIN, "profile")
        else:
            if cfg.training.workers > 1:  # N hpo-worker runs tune one study (docs/scaling.md)
                trained = tune_with_workers(cfg=cfg, plan=plan, df=data.frame, spec=spec,
                                            splits=splits, storage=settings.optuna_storage,
                                            as_of=as_of)
                plan = with_tuning_lineage(plan=plan, storage=settings.optuna_storage,
                                           workers=cfg.training.workers)
            else:
                with gpu_slot(plan.device):
                    trained = train(df=data.frame, spec=spec, splits=splits,
                                    training=cfg.training, device=plan.device,
                                    study_name=plan.study_name, storage=settings.optuna_storage)
            trained = choose_threshold(df=data.frame, valid_rows=splits.valid, trained=trained,
                                       rule=cfg.threshold)
            test = data.frame.iloc[splits.test]
            train_rows, train_passes = splits.train, None
        report = evaluate(df=test, test_rows=None, trained=trained, slices=cfg.slices,
                          min_slice_rows=cfg.gate.min_slice_rows, plot_dir=plan.plot_dir)
        champion = score_champion(registry=registry, cfg=cfg, test=test, spec=spec)
        decision = gate(candidate=report, champion=champion, spec=cfg.gate)
        log_results(registry=registry, run_id=run_id, cfg=cfg, trained=trained, report=report,
                    champion=champion, decision=decision)
        report_merge_request(model=cfg.name, report=report, champion=champion.report,
                             champion_version=champion.version, decision=decision,
                             run_url=registry.run_url(run_id), settings=settings)
        ensure_passed(model=cfg.name, decision=decision)
        profile = profile_training_data(frame=data.frame, rows=train_rows, trained=trained,
                                        report=report, bins=cfg.monitoring.bins,
                                        passes=train_passes)
        files = VersionFiles(trained=trained, example=input_example(test, spec),
                             card=model_card(cfg, trained, report, decision, validation,
                                             plan.tags, champion=champion.report),
                             profile=profile)
        registration = register(registry=registry, cfg=cfg, run_id=run_id, files=files,
                                decision=decision, tags=plan.tags, validation=validation,
                                signed=runtime.signed)
    return PipelineResult(model=cfg.name, version=registration.version, metric=cfg.gate.metric,
                          value=decision.value, gate=decision.summary(), run_id=run_id,
                          reused=False)
