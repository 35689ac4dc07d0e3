"""What GitLab's deployment approvals hand the release stage: a deployment with each person's
answer as GitLab recorded it, the environment's protection, and the two interfaces the approval
source is given (the GitLab reader and the audit trail), so the rule never talks to a service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tasks.core.audit_event import AuditEvent


@dataclass(frozen=True)
class DeploymentApproval:
    """One person's answer, as GitLab recorded it (the user is whoever held the token)."""

    user_id: int
    username: str
    name: str
    status: str  # approved | rejected
    created_at: str
    comment: str


@dataclass(frozen=True)
class EnvironmentDeployment:
    id: int
    environment: str
    status: str
    sha: str
    pipeline_id: int | None
    job: str
    approvals: tuple[DeploymentApproval, ...]


@dataclass(frozen=True)
class ProtectedEnvironment:
    name: str
    required_approvals: int  # required_approval_count plus every approval rule's own count


class DeploymentApprovals(Protocol):
    """GitLab's side, read with the pipeline's token (tasks/adapters/gitlab_deployments.py)."""

    def protected_environment(self, name: str) -> ProtectedEnvironment: ...

    def deployment_of_run(self, environment: str, run_id: str) -> int: ...

    def read_deployment(self, deployment_id: int) -> EnvironmentDeployment: ...


class RecordLog(Protocol):
    """The model's signed audit trail (tasks/adapters/audit_trail.py's AuditTrail)."""

    def events(self) -> list[dict[str, str]]: ...

    def write(self, event: AuditEvent) -> dict[str, str]: ...
