"""Approval source `gitlab-environment`: GitLab's deployment approvals on the protected production
environment decide. The deploy run's pipeline holds a blocked production deployment; people
approve or reject it in GitLab; the run reads GitLab's record of who answered (user id, username,
time, comment) and judges it by the organisation's rule: listed approvers, four eyes against the
sealed builder and commit author, and the minimum of distinct approvers. Nothing a person types
into Prefect, and no tag on the version, is ever counted. GitLab and the trail are handed in
(contracts.gitlab): this module talks to no service itself."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tasks.contracts.gitlab import (
    DeploymentApproval,
    DeploymentApprovals,
    EnvironmentDeployment,
    RecordLog,
)
from tasks.contracts.release import Approval, Identity
from tasks.core.audit_event import Action, AuditEvent
from tasks.core.config import ModelConfig
from tasks.core.errors import ApprovalError, ApprovalRejected, DeployError
from tasks.core.governance import Governance
from tasks.core.sealed import registered_facts
from tasks.release.policy import GITLAB_ENVIRONMENT, refusal
from tasks.release.waiting import AWAITING, emit, tag, waiting_run_id

Event = Callable[..., AuditEvent]  # tasks.adapters.audit_trail.event: a record before it is sealed
NOT_CONFIGURED = ("identity gitlab-environment needs GitLab settings where the deploy run "
                  "executes (CI_SERVER_URL, CI_PROJECT_ID, MLOPS_GITLAB_TOKEN)")

ENVIRONMENT = "production"
REQUESTED = Action.APPROVAL_REQUESTED


def gitlab_identity(answer: DeploymentApproval) -> Identity:
    """Who answered, exactly as GitLab recorded it (the owner of the token that answered)."""
    return Identity(username=answer.username, user_id=answer.user_id, name=answer.name,
                    verified=True, via=GITLAB_ENVIRONMENT)


@dataclass(frozen=True)
class EnvironmentVerdict:
    """GitLab's answers judged by the rule: who counts, who was refused and why, a rejection
    that stops the deployment, and why it is not yet approved."""

    counted: tuple[tuple[Identity, DeploymentApproval], ...]
    refused: tuple[tuple[Identity, DeploymentApproval, str], ...]
    rejection: tuple[Identity, DeploymentApproval] | None
    short: str | None

    @property
    def approved(self) -> bool:
        return self.rejection is None and self.short is None


def judge(rule: Governance, deployment: EnvironmentDeployment,
          facts: Mapping[str, str] | None) -> EnvironmentVerdict:
    """The newest answer of each GitLab user (by user id) against the rule; `facts` are the
    version's sealed facts (four eyes reads the builder and commit author from them)."""
    latest: dict[int, DeploymentApproval] = {}
    for answer in sorted(deployment.approvals, key=lambda a: a.created_at):
        latest[answer.user_id] = answer
    counted, refused, rejection = [], [], None
    for answer in latest.values():
        who = gitlab_identity(answer)
        if answer.status == "rejected":
            reason = refusal(rule, who, None)
            if reason:
                refused.append((who, answer, reason))
            elif rejection is None:
                rejection = (who, answer)
            continue
        if answer.status != "approved":
            refused.append((who, answer, f"GitLab approval status {answer.status!r} is neither "
                                          "approved nor rejected"))
            continue
        reason = refusal(rule, who, facts or {})
        if reason:
            refused.append((who, answer, reason))
        else:
            counted.append((who, answer))
    short = None
    if len(counted) < rule.min_approvals:
        names = ", ".join(who.username for who, _ in counted) or "none"
        short = (f"{rule.model} needs {rule.min_approvals} distinct approvers in GitLab, "
                 f"deployment {deployment.id} has {len(counted)} that count ({names})")
    return EnvironmentVerdict(counted=tuple(counted), refused=tuple(refused),
                              rejection=rejection, short=short)


def request(trail: RecordLog, event: Event, gitlab: DeploymentApprovals | None, version: str,
            run_id: str) -> int:
    """The blocked production deployment this run waits on: found once in GitLab and recorded
    in the signed `approval-requested` record, read back from there on every replay."""
    for record in reversed(trail.events()):
        if record.get("action") == REQUESTED and record.get("flow_run_id") == run_id \
                and record.get("deployment_id"):
            return int(record["deployment_id"])
    if gitlab is None:
        raise ApprovalError(NOT_CONFIGURED)
    protection = gitlab.protected_environment(ENVIRONMENT)
    deployment_id = gitlab.deployment_of_run(ENVIRONMENT, run_id)
    trail.write(event(REQUESTED, ENVIRONMENT, None, version, "pipeline", flow_run_id=run_id,
                      deployment_id=str(deployment_id), source=GITLAB_ENVIRONMENT,
                      gitlab_required_approvals=str(protection.required_approvals)))
    return deployment_id


def decide(trail: RecordLog, event: Event, rule: Governance, gitlab: DeploymentApprovals | None,
           version: str, run_id: str, deployment_id: int) -> Approval | None:
    """Read the deployment's approvals from GitLab, judge them against the facts sealed at
    registration and record each answer once (GitLab's user id as the identity): the approval
    when the rule is met, None while it is not, ApprovalRejected on a rejection."""
    if gitlab is None:
        raise ApprovalError(NOT_CONFIGURED)
    deployment = gitlab.read_deployment(deployment_id)
    if deployment.environment != ENVIRONMENT:
        raise ApprovalError(f"GitLab deployment {deployment_id} is to {deployment.environment!r},"
                            f" not {ENVIRONMENT}: refused")
    events = trail.events()
    verdict = judge(rule, deployment, registered_facts(events, version))
    seen = {(r.get("action"), r.get("deployment_id"), r.get("actor_id"), r.get("decided_at"))
            for r in events}

    def record(action: Action, who: Identity, answer: DeploymentApproval, reason: str = "") -> None:
        key = (action, str(deployment.id), str(who.user_id), answer.created_at)
        if key not in seen:  # a resumed run replays this: each answer is recorded once
            trail.write(event(action, ENVIRONMENT, None, version, who.username, answer.comment,
                              run_id, reason, identity=who.label(), actor_id=str(who.user_id),
                              deployment_id=str(deployment.id), decided_at=answer.created_at,
                              source=GITLAB_ENVIRONMENT))
            seen.add(key)

    for who, answer, reason in verdict.refused:
        record(Action.APPROVAL_REFUSED, who, answer, reason)
    if verdict.rejection is not None:
        who, answer = verdict.rejection
        record(Action.APPROVAL_REJECTED, who, answer)
        raise ApprovalRejected(f"{rule.model} v{version} rejected in GitLab by {who.label()}"
                          + (f": {answer.comment}" if answer.comment else ""))
    if verdict.short is not None:
        return None
    for who, answer in verdict.counted:
        record(Action.APPROVAL_GIVEN, who, answer)
    who, answer = verdict.counted[-1]
    return Approval(approver=who, approved=True, comment=answer.comment)


def wait_for_gitlab(trail: RecordLog, event: Event, rule: Governance, cfg: ModelConfig,
                    version: str, gitlab: DeploymentApprovals | None) -> Approval:
    """Wait (suspended, no runner held; paused in the CLI's own process) until GitLab's approvals
    of this run's blocked production deployment meet the rule, or stop on a rejection. Whatever
    resumes the run (the production-approval job, `mlops approve`, the UI's Resume) only makes
    it read GitLab again: an answer typed into Prefect decides nothing."""
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run, suspend_flow_run
    from prefect.logging import get_run_logger
    from prefect.runtime import deployment, flow_run

    hours = cfg.deploy.production.approval_timeout_h
    log, run_id = get_run_logger(), waiting_run_id()
    first = not any(r.get("action") == REQUESTED and r.get("flow_run_id") == run_id
                    for r in trail.events())
    deployment_id = request(trail, event, gitlab, version, run_id)
    if first:
        emit("mlops.approval.requested", cfg.name, version,
             {"url": flow_run.ui_url or "", "gitlab_deployment_id": str(deployment_id)})
    attempt = 0
    while True:
        attempt += 1
        try:
            approval = decide(trail, event, rule, gitlab, version, run_id, deployment_id)
        except DeployError:
            tag(remove=[AWAITING])
            raise
        if approval is not None:
            tag(remove=[AWAITING])
            emit("mlops.approval.answered", cfg.name, version,
                 {"decision": "approve", "approver": approval.approver.label(),
                  "comment": approval.comment})
            return approval
        tag(add=[AWAITING, f"model:{cfg.name}", f"version:{version}"])
        log.info("%s v%s waits for approval of GitLab deployment %s (environment %s): approve "
                 "it in GitLab, then run the pipeline's production-approval job", cfg.name,
                 version, deployment_id, ENVIRONMENT)
        key = f"gitlab-approval-{attempt}"
        try:
            if deployment.get_id() is not None:
                suspend_flow_run(timeout=int(hours * 3600), key=key)
            else:
                pause_flow_run(timeout=int(hours * 3600), poll_interval=2, key=key)
        except FlowPauseTimeout:  # in the CLI's process; a suspended run is failed by the server
            tag(remove=[AWAITING])
            trail.write(event(Action.APPROVAL_TIMEOUT, ENVIRONMENT, None, version, "nobody",
                              reason=f"no approval in GitLab within {hours:g} h",
                              flow_run_id=run_id, deployment_id=str(deployment_id)))
            raise DeployError(f"{cfg.name} v{version} not promoted: GitLab deployment "
                              f"{deployment_id} not approved within {hours:g} h") from None
