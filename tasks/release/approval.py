"""Approval for production: the policy (none, up front, or a person answering a paused run),
who may approve, and what they read before deciding. Refusals and rejections are audited."""

from __future__ import annotations

from tasks.adapters.gitlab import open_gitlab
from tasks.adapters.mlflow_registry import Registry
from tasks.contracts.release import Approval, SmokeReport
from tasks.core.config import ModelConfig
from tasks.core.errors import ApprovalError, DeployError
from tasks.release.audit import AuditTrail, event
from tasks.reports.approval import approval_markdown


def check_approver(cfg: ModelConfig, approver: str) -> None:
    if not approver.strip():
        raise ApprovalError("an approver name is required")
    if not cfg.deploy.production.may_approve(approver):
        allowed = ", ".join(cfg.deploy.production.approvers or [])
        raise ApprovalError(f"{approver} may not approve {cfg.name} (approvers: {allowed})")


def reject(registry: Registry, cfg: ModelConfig, version: str, approver: str, comment: str,
           flow_run_id: str | None, reason: str = "rejected") -> None:
    """Record that a version was not approved (rejected, refused or timed out)."""
    current = registry.alias_version(cfg.name, cfg.deploy.production.alias)
    AuditTrail(registry, cfg.name, open_gitlab()).write(
        event("approval-" + reason, "production", current, version, approver, comment,
              flow_run_id))


def approval_report(registry: Registry, cfg: ModelConfig, version: str, staging: SmokeReport
                    ) -> str:
    """What an approver reads: metrics vs champion, gate, validation, smoke tests, links."""
    ref = registry.require_version(cfg.name, version)
    metrics = registry.run_metrics(ref.run_id) if ref.run_id else {}
    params = registry.run_params(ref.run_id) if ref.run_id else {}
    return approval_markdown(
        model=cfg.name, version=version,
        champion=registry.alias_version(cfg.name, cfg.deploy.production.alias),
        tags=ref.tags, metrics=metrics, params=params,
        run_url=registry.run_url(ref.run_id) if ref.run_id else None, smoke=staging,
        approvers=cfg.deploy.production.approvers)


def wait_for_approval(cfg: ModelConfig, report: str, poll_interval_s: int = 2) -> Approval:
    """Pause the current flow run with an approval form; the Prefect UI or `mlops approve`
    resumes it. Raises TimeoutError when nobody answers within approval_timeout_h."""
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run
    from prefect.input import RunInput

    class ApprovalInput(RunInput):
        approver: str
        approve: bool = False
        comment: str = ""

    form = ApprovalInput.with_initial_data(description=report, approver="", approve=False)
    try:
        answer = pause_flow_run(wait_for_input=form,
                                timeout=int(cfg.deploy.production.approval_timeout_h * 3600),
                                poll_interval=poll_interval_s)
    except FlowPauseTimeout:
        raise TimeoutError(f"no approval within {cfg.deploy.production.approval_timeout_h:g} h") \
            from None
    return Approval(approver=answer.approver, approved=answer.approve, comment=answer.comment)


def obtain_approval(registry: Registry, cfg: ModelConfig, version: str, staging: SmokeReport,
                    approve_as: str | None, comment: str, wait: bool) -> Approval | None:
    """Approval by policy (none), up front (approve_as), or by pausing for a person; None when
    nobody could answer (no server of the user's to pause on): the version stays staged."""
    from prefect.runtime import flow_run

    spec = cfg.deploy.production
    if spec.approval == "none":
        return Approval(approver="policy: approval none", approved=True, comment=comment)
    if approve_as:
        check_approver(cfg, approve_as)
        return Approval(approver=approve_as, approved=True, comment=comment or "approved up front")
    if not wait:
        return None
    from prefect.logging import get_run_logger

    run_id = flow_run.get_id()
    get_run_logger().info("waiting for approval of %s v%s: approve in the Prefect UI or run "
                          "`mlops approve %s --as NAME [--reject] [--comment TEXT]`",
                          cfg.name, version, run_id)
    try:
        answer = wait_for_approval(cfg, approval_report(registry, cfg, version, staging))
    except TimeoutError as exc:
        reject(registry, cfg, version, "nobody", str(exc), run_id, "timeout")
        raise DeployError(f"{cfg.name} v{version} not promoted: {exc}") from None
    if not spec.may_approve(answer.approver):
        reject(registry, cfg, version, answer.approver, "not an approver", run_id, "refused")
        raise ApprovalError(f"{answer.approver} may not approve {cfg.name}; not promoted")
    if not answer.approved:
        reject(registry, cfg, version, answer.approver, answer.comment, run_id)
        raise DeployError(f"{cfg.name} v{version} rejected by {answer.approver}"
                          + (f": {answer.comment}" if answer.comment else ""))
    return answer
