"""The deploy flow: staging (serve + smoke tests) → approval → production (with rollback)."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from tasks.adapters.mlflow_registry import Registry
from tasks.core.config import ModelConfig, load_config
from tasks.core.errors import ApprovalError, DeployError
from tasks.core.settings import Settings
from tasks.deploy import (
    Approval,
    DeployResult,
    SmokeReport,
    approval_report,
    check_approver,
    deploy_staging,
    promote,
    reject,
    wait_for_approval,
)
from tasks.tracking import connect, current_flow_run_id


@task(name="deploy-staging", cache_policy=NO_CACHE)
def staging(registry: Registry, cfg: ModelConfig, version: str, actor: str) -> SmokeReport:
    from prefect.logging import get_run_logger

    report = deploy_staging(registry, cfg, version, actor, current_flow_run_id())
    for check in report.checks:
        get_run_logger().info("smoke %s", check)
    return report


@task(name="promote-production", cache_policy=NO_CACHE)
def production(registry: Registry, cfg: ModelConfig, version: str, approval: Approval) -> str:
    previous = promote(registry, cfg, version, approval.approver, approval.comment,
                       current_flow_run_id())
    return previous or ""


def _approval(registry: Registry, cfg: ModelConfig, version: str, report: SmokeReport,
              approve_as: str | None, comment: str, wait: bool) -> Approval | None:
    """Up front, by pausing for a person, not needed, or deferred (None) when nobody can answer."""
    spec = cfg.deploy.production
    if spec.approval == "none":
        return Approval(approver="policy: approval none", approved=True, comment=comment)
    if approve_as:
        check_approver(cfg, approve_as)
        return Approval(approver=approve_as, approved=True, comment=comment or "approved up front")
    if not wait:
        return None
    from prefect.logging import get_run_logger

    get_run_logger().info("waiting for approval of %s v%s: approve in the Prefect UI or run "
                          "`mlops approve %s --as NAME [--reject] [--comment TEXT]`",
                          cfg.name, version, current_flow_run_id())
    try:
        answer = wait_for_approval(cfg, approval_report(registry, cfg, version, report))
    except TimeoutError as exc:
        reject(registry, cfg, version, "nobody", str(exc), current_flow_run_id(), "timeout")
        raise DeployError(f"{cfg.name} v{version} not promoted: {exc}") from None
    if not spec.may_approve(answer.approver):
        reject(registry, cfg, version, answer.approver, "not an approver",
               current_flow_run_id(), "refused")
        raise ApprovalError(f"{answer.approver} may not approve {cfg.name}; not promoted")
    if not answer.approved:
        reject(registry, cfg, version, answer.approver, answer.comment, current_flow_run_id())
        raise DeployError(f"{cfg.name} v{version} rejected by {answer.approver}"
                          + (f": {answer.comment}" if answer.comment else ""))
    return answer


@flow(name="deploy")
def deploy_model(model: str, version: str, approve_as: str | None = None, comment: str = "",
                 wait: bool = True) -> DeployResult:
    """Stage, approve and promote one registered version."""
    settings = Settings.from_env()
    cfg = load_config(model, settings.config_dir)
    registry = connect(settings)
    champion = registry.alias_version(cfg.name, cfg.deploy.production.alias)
    if champion == version:
        return DeployResult(model=cfg.name, version=version, staging="skipped",
                            production="already champion", champion=version,
                            message=f"{cfg.name} v{version} is already the champion")
    actor = approve_as or "pipeline"
    report = staging(registry, cfg, version, actor)
    approval = _approval(registry, cfg, version, report, approve_as, comment, wait)
    if approval is None:
        return DeployResult(
            model=cfg.name, version=version, staging="passed", production="awaiting approval",
            champion=registry.alias_version(cfg.name, cfg.deploy.production.alias),
            message=f"continue with: mlops promote {cfg.name} --version {version} --as NAME")
    previous = production(registry, cfg, version, approval)
    return DeployResult(model=cfg.name, version=version, staging="passed",
                        production=f"promoted by {approval.approver}", champion=version,
                        message=f"{cfg.name}@{cfg.deploy.production.alias}: "
                                f"v{previous or '-'} -> v{version}")
