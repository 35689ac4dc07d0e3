"""GitLab's deployment approvals, read with the pipeline's own token: the protected environment's
rules (`GET protected_environments/:name`), the blocked deployment a deploy run's pipeline holds
(`GET deployments?environment=&status=blocked`, bound to the run by its pipeline's
PREFECT__FLOW_RUN_ID), and who approved or rejected it (`GET deployments/:id`: `approvals`).
Like gitlab_identity this fails closed: what GitLab cannot confirm is never an approval."""

from __future__ import annotations

from typing import Any

from tasks.contracts.gitlab import DeploymentApproval, EnvironmentDeployment, ProtectedEnvironment
from tasks.core.errors import ApprovalError, ConfigError
from tasks.core.redact import redact
from tasks.core.settings import GitLabSettings

RUN_VARIABLE = "PREFECT__FLOW_RUN_ID"


def _project(settings: GitLabSettings):
    import gitlab

    client = gitlab.Gitlab(settings.url, private_token=settings.resolve_token(), timeout=15,
                           retry_transient_errors=False)
    return client.projects.get(settings.project_id, lazy=True)


def _unconfirmed(what: str, exc: Exception) -> ApprovalError:
    code = getattr(exc, "response_code", None)
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ApprovalError(f"GitLab could not confirm {what}"
                         + (f" (HTTP {code}: {redact(reason)[:160]})" if code
                            else f" ({redact(reason)[:160]})") + "; nothing was approved")


def _approval(raw: dict[str, Any]) -> DeploymentApproval:
    user = raw.get("user") or {}
    return DeploymentApproval(user_id=int(user["id"]), username=str(user["username"]),
                              name=str(user.get("name") or ""), status=str(raw["status"]),
                              created_at=str(raw.get("created_at") or ""),
                              comment=str(raw.get("comment") or ""))


def parse_deployment(raw: dict[str, Any]) -> EnvironmentDeployment:
    """A deployment as `GET deployments/:id` returns it (approvals from its `approvals` list)."""
    job = raw.get("deployable") or {}
    pipeline = job.get("pipeline") or {}
    return EnvironmentDeployment(
        id=int(raw["id"]), environment=str((raw.get("environment") or {}).get("name", "")),
        status=str(raw.get("status", "")), sha=str(raw.get("sha", "")),
        pipeline_id=int(pipeline["id"]) if pipeline.get("id") is not None else None,
        job=str(job.get("name", "")),
        approvals=tuple(_approval(a) for a in raw.get("approvals") or []))


def protected_environment(settings: GitLabSettings, name: str) -> ProtectedEnvironment:
    """The environment's protection; refused when it is not protected or asks no approval (GitLab
    would then run its deployment job without anyone approving)."""
    from gitlab.exceptions import GitlabGetError

    try:
        raw = _project(settings).protected_environments.get(name).attributes
    except GitlabGetError as exc:
        if exc.response_code == 404:
            raise ConfigError(f"GitLab environment {name!r} is not protected: protect it with "
                              "required approvals (Settings > CI/CD > Protected environments) "
                              "for identity gitlab-environment") from None
        raise _unconfirmed(f"the protection of environment {name!r}", exc) from None
    except Exception as exc:
        raise _unconfirmed(f"the protection of environment {name!r}", exc) from None
    required = int(raw.get("required_approval_count") or 0) + sum(
        int(rule.get("required_approvals") or 0) for rule in raw.get("approval_rules") or [])
    if required < 1:
        raise ConfigError(f"GitLab environment {name!r} requires no deployment approvals: set "
                          "required approvals or approval rules on it for identity "
                          "gitlab-environment")
    return ProtectedEnvironment(name=name, required_approvals=required)


def deployment_of_run(settings: GitLabSettings, environment: str, run_id: str) -> int:
    """The id of the blocked `environment` deployment in the pipeline GitLab runs for this flow
    run (its pipeline variable PREFECT__FLOW_RUN_ID), newest first."""
    try:
        project = _project(settings)
        blocked = project.deployments.list(environment=environment, status="blocked",
                                           order_by="id", sort="desc", get_all=True)
        for deployment in blocked:
            pipeline = ((deployment.attributes.get("deployable") or {}).get("pipeline") or {})
            if pipeline.get("id") is None:
                continue
            variables = project.pipelines.get(pipeline["id"], lazy=True).variables.list(
                get_all=True)
            if any(v.attributes.get("key") == RUN_VARIABLE and v.attributes.get("value") == run_id
                   for v in variables):
                return int(deployment.attributes["id"])
    except Exception as exc:
        raise _unconfirmed(f"the blocked {environment} deployment of flow run {run_id}",
                           exc) from None
    raise ApprovalError(f"no blocked {environment} deployment in GitLab for flow run {run_id}: "
                        "the deploy run's pipeline needs the production-approval job "
                        f"(environment {environment}, action start) on a protected environment "
                        "with required approvals")


def read_deployment(settings: GitLabSettings, deployment_id: int) -> EnvironmentDeployment:
    try:
        raw = _project(settings).deployments.get(deployment_id).attributes
        return parse_deployment(raw)
    except Exception as exc:
        raise _unconfirmed(f"the approvals of deployment {deployment_id}", exc) from None


class GitLabDeploymentApprovals:
    """The approval source's view of one project's GitLab (contracts.gitlab.DeploymentApprovals)."""

    def __init__(self, settings: GitLabSettings):
        self.settings = settings

    def protected_environment(self, name: str) -> ProtectedEnvironment:
        return protected_environment(self.settings, name)

    def deployment_of_run(self, environment: str, run_id: str) -> int:
        return deployment_of_run(self.settings, environment, run_id)

    def read_deployment(self, deployment_id: int) -> EnvironmentDeployment:
        return read_deployment(self.settings, deployment_id)
