"""The deploy flow: staging (serve + smoke tests) → approval → production (with rollback)."""

from __future__ import annotations

from prefect import flow
from prefect.client.schemas.objects import State

from tasks.adapters.registries import connect
from tasks.adapters.slack import notify_flow_failure
from tasks.contracts.release import DeployResult
from tasks.core.config import is_config_path, load_config
from tasks.core.outcomes import outcome_of
from tasks.core.parameters import ModelName
from tasks.core.runtime import Runtime
from tasks.core.settings import Settings
from tasks.release.approval import obtain_approval
from tasks.release.production import production
from tasks.release.proposal import judge_proposal
from tasks.release.staging import staging
from tasks.reports.release import publish_deploy_summary


@flow(name="deploy", flow_run_name="deploy-{model}-v{version}", log_prints=True,
      on_failure=[notify_flow_failure], on_crashed=[notify_flow_failure])
def deploy_model(model: ModelName, version: str, comment: str = "", wait: bool = True
                 ) -> DeployResult | State[DeployResult]:
    """Stage one registered version, get it approved, promote it to production.

    Args:
        model: A model configured under configs/models (its name).
        version: The registered version to deploy (as the registry numbers it).
        comment: Kept with the approval in the audit trail.
        wait: Wait for a person's approval (False: stop after staging when nobody can answer
            here, e.g. a temporary local server).
    """
    runtime = Runtime(Settings.from_env())  # read once: one policy and one key for the run
    settings = runtime.settings
    cfg = load_config(model, settings.config_dir)
    registry = connect(settings)
    proposal = judge_proposal(registry=registry, cfg=cfg, version=version, settings=settings,
                              key=runtime.audit_key)
    if proposal.refusal:
        return publish_deploy_summary(DeployResult.not_offered(
            model=cfg.name, version=version, champion=proposal.champion, why=proposal.refusal))
    report = staging(registry=registry, cfg=cfg, version=version, actor="pipeline",
                     env=settings.child_env, settings=settings, policy=runtime.policy,
                     key=runtime.audit_key)
    if is_config_path(model):
        return publish_deploy_summary(DeployResult.from_a_path(
            model=cfg.name, version=version, champion=proposal.champion))
    approval = outcome_of(obtain_approval, registry=registry, cfg=cfg, version=version,
                          staging=report, comment=comment, wait=wait, settings=settings,
                          policy=runtime.policy, key=runtime.audit_key)
    if isinstance(approval, State):  # a person rejected it: the run ends Failed("Rejected")
        return approval
    if approval is None:
        return publish_deploy_summary(DeployResult.awaiting(
            model=cfg.name, version=version, champion=proposal.champion))
    previous = production(registry=registry, cfg=cfg, version=version, approval=approval,
                          settings=settings, policy=runtime.policy, key=runtime.audit_key)
    return publish_deploy_summary(DeployResult.promoted(
        model=cfg.name, version=version, alias=cfg.deploy.production.alias, previous=previous,
        approval=approval))
