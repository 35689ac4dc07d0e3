"""`mlops approve`: find the deploy run waiting for a model's approval and answer it through
Prefect's API, after checking who answers (and, for identity gitlab, signing the answer in
GitLab with the approver's own token, where the run reads it back). For identity
gitlab-environment the answer is in GitLab's deployment approvals: `wake` only resumes the run so
that it reads them again."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from tasks.adapters.gitlab_identity import approval_note, sign_approval
from tasks.contracts.release import Identity
from tasks.core.config import ModelConfig
from tasks.core.errors import ApprovalError, ConfigError, DeployError
from tasks.core.settings import Settings
from tasks.release.approval import AWAITING


@dataclass(frozen=True)
class Pending:
    flow_run_id: str
    name: str
    model: str
    version: str


def pending(settings: Settings, model: str | None = None) -> list[Pending]:
    """Deploy runs waiting for approval (paused or suspended with the awaiting tag)."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType

    if not settings.prefect_api_url:
        raise ConfigError("mlops approve needs PREFECT_API_URL: the Prefect server where the "
                          "deploy run waits")
    tags = [AWAITING, *([f"model:{model}"] if model else [])]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["deploy"])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
                tags=FlowRunFilterTags(all_=tags)))
    return [Pending(str(r.id), r.name, str(r.parameters.get("model")),
                    str(r.parameters.get("version"))) for r in runs]


def find(settings: Settings, target: str) -> Pending:
    """The one waiting run a model name or a flow run id names."""
    try:
        run_id = str(UUID(target))
    except ValueError:
        run_id = None
    found = pending(settings, None if run_id else target)
    if run_id:
        found = [p for p in found if p.flow_run_id == run_id]
    if not found:
        raise ApprovalError(f"nothing waits for approval as {target!r} (no paused deploy run)")
    if len(found) > 1:
        listed = "; ".join(f"{p.model} v{p.version}: {p.flow_run_id}" for p in found)
        raise ApprovalError(f"{len(found)} runs wait for {target}: name one by flow run id "
                            f"({listed})")
    return found[0]


def answer(settings: Settings, run: Pending, cfg: ModelConfig, who: Identity, approve: bool,
           comment: str, commit: str) -> str:
    """Resume the run with the answer; for a verified approver, sign it in GitLab first."""
    from prefect import get_client

    decision = "approve" if approve else "reject"
    if decision == "reject" and not comment.strip():
        raise ApprovalError("a comment is required when rejecting (--comment TEXT)")
    if who.verified:
        if settings.gitlab is None:  # verified through GitLab, so never without it
            raise ApprovalError("a verified approver signs in GitLab: set CI_SERVER_URL and "
                                "CI_PROJECT_ID")
        sign_approval(settings.gitlab, settings.approver_token, commit,
                      approval_note(run.flow_run_id, decision, cfg.name, run.version, comment))
    with get_client(sync_client=True) as client:
        result = client.resume_flow_run(UUID(run.flow_run_id), run_input={
            "decision": decision, "approver": who.username, "comment": comment})
    if result.status.value != "ACCEPT":
        reason = getattr(result.details, "reason", "") or result.status.value
        raise DeployError(f"Prefect did not resume flow run {run.flow_run_id}: {reason}")
    verb = "approved" if approve else "rejected"
    return f"{verb} {cfg.name} v{run.version} (flow run {run.flow_run_id}) as {who.label()}"


def wake(settings: Settings, run: Pending) -> str:
    """Resume a run waiting on GitLab's deployment approvals (identity gitlab-environment) with no
    answer: it reads the approvals from GitLab, promotes, stops on a rejection or waits again."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        result = client.resume_flow_run(UUID(run.flow_run_id))
    if result.status.value != "ACCEPT":
        reason = getattr(result.details, "reason", "") or result.status.value
        raise DeployError(f"Prefect did not resume flow run {run.flow_run_id}: {reason}")
    return (f"{run.model} v{run.version} (flow run {run.flow_run_id}) resumed: it reads its "
            "production deployment's approvals from GitLab")
