"""GitLab pipelines for the `gitlab-ci` worker: check the token, start one pipeline per flow run,
read its job, cancel it. Unlike the steps in `gitlab.py` (where GitLab never decides a result),
these calls raise: a refusal is a `GitLabRefused` naming what to fix, a GitLab that stays
unreachable after bounded retries a `GitLabUnavailable`. Reads are retried; a create is never
replayed blindly (python-gitlab's own retries would replay the POST): before each new attempt the
pipeline is looked up by its unique name, so one submission starts at most one pipeline."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast
from urllib.parse import quote

from tasks.adapters.gitlab import NO_SDK_RETRY, GitLab, _retry_after
from tasks.core.errors import GitLabRefused, GitLabUnavailable
from tasks.core.redact import redact
from tasks.core.settings import GitLabSettings

T = TypeVar("T")
FINAL = frozenset({"success", "failed", "canceled", "skipped"})
ROLES = {"developer": 30, "maintainer": 40, "owner": 50}
VARIABLES_REFUSED = "Insufficient permissions to set pipeline variables"


class _JsonApi(Protocol):
    """python-gitlab's raw calls as this module makes them: JSON answers (never streamed or
    raw), a list of objects from one page of a list (get_all=False, no iterator)."""

    def http_get(self, path: str, **kwargs: Any) -> dict[str, Any]: ...

    def http_list(self, path: str, **kwargs: Any) -> list[dict[str, Any]]: ...

    def http_post(self, path: str, **kwargs: Any) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Project:
    id: int
    path: str
    default_branch: str
    web_url: str


@dataclass(frozen=True)
class Pipeline:
    id: int
    project_id: int
    status: str
    web_url: str

    @property
    def final(self) -> bool:
        return self.status in FINAL


@dataclass(frozen=True)
class Job:
    id: int
    name: str
    status: str
    web_url: str
    failure_reason: str | None = None


class Pipelines:
    """One project's pipelines, through python-gitlab's HTTP layer (paths as in GitLab's docs)."""

    def __init__(self, settings: GitLabSettings, sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.gitlab = GitLab(settings, sleep)
        self.http = cast(_JsonApi, self.gitlab.client)
        self.sleep = sleep
        self.base = f"/projects/{quote(str(settings.project_id), safe='')}"

    # -- reads, retried -------------------------------------------------------------------
    def _read(self, what: str, fn: Callable[[], T]) -> T:
        why = ""
        for attempt in range(1, self.settings.attempts + 1):
            try:
                return fn()
            except Exception as exc:
                why, wait = self._transient(what, exc, attempt)
            if attempt < self.settings.attempts:
                self.sleep(min(wait, self.settings.max_wait_s))
        raise GitLabUnavailable(f"GitLab at {redact(self.settings.url)} unreachable: {what} "
                                f"failed {self.settings.attempts} times ({why})")

    def _transient(self, what: str, exc: Exception, attempt: int) -> tuple[str, float]:
        """(why, seconds to wait) for a transient error; anything else is raised as a refusal."""
        import requests
        from gitlab.exceptions import GitlabError

        if isinstance(exc, requests.RequestException):
            return type(exc).__name__, float(2 ** (attempt - 1))
        if not isinstance(exc, GitlabError):
            raise exc
        code = exc.response_code or 0
        if code == 429 or code >= 500:
            return f"HTTP {code}", _retry_after(self.gitlab.retry_after, attempt)
        refused = GitLabRefused(self._refusal(what, code, _reason(exc)))
        refused.status = code
        raise refused from None

    def _refusal(self, what: str, code: int, reason: str) -> str:
        project = self.settings.project_id
        if code == 401:
            hint = "the token is invalid, expired or revoked"
        elif VARIABLES_REFUSED in reason:
            hint = ("the worker passes the flow run id as a pipeline variable: in project "
                    f"{project} set Settings > CI/CD > Variables > 'Minimum role to use pipeline "
                    "variables' to the token's role (Developer)")
        elif code == 403:
            hint = (f"the token needs the api scope and the Developer role on project {project} "
                    "(Maintainer for protected branches)")
        elif code == 404:
            hint = f"project {project} does not exist or the token cannot see it"
        elif code == 400 and what.startswith("creating"):
            hint = (".gitlab-ci.yml on that ref needs the flow-run job "
                    "(rules: - if: $PREFECT__FLOW_RUN_ID)")
        else:
            hint = "see GitLab's answer"
        return f"GitLab refused {what} (HTTP {code}: {reason}): {hint}"

    # -- the worker's calls ---------------------------------------------------------------
    def check_access(self) -> Project:
        """The project, after checking the token can create and cancel its pipelines with
        variables (api scope, the project readable, pipeline variables allowed for its role)."""
        try:
            token = self._read("reading the token", lambda: self.http.http_get(
                "/personal_access_tokens/self", **NO_SDK_RETRY))
        except GitLabRefused as exc:
            if exc.status != 404:  # GitLab before 15.5 cannot tell: the first create will
                raise
            token = {"scopes": ["api"]}
        if "api" not in (token.get("scopes") or []):
            scopes = ", ".join(token.get("scopes") or []) or "none"
            raise GitLabRefused(f"the GitLab token has scopes {scopes}: the gitlab-ci worker "
                                "needs the api scope to create and cancel pipelines")
        raw = self._read(f"reading project {self.settings.project_id}",
                         lambda: self.http.http_get(self.base, **NO_SDK_RETRY))
        minimum = raw.get("ci_pipeline_variables_minimum_override_role")
        levels = [(v or {}).get("access_level") or 0
                  for v in (raw.get("permissions") or {}).values()]
        if minimum == "no_one_allowed" or (
                levels and minimum in ROLES and max(levels) < ROLES[minimum]):
            raise GitLabRefused(self._refusal("pipeline variables", 400, VARIABLES_REFUSED)
                                + f" (now: {minimum})")
        return Project(id=int(raw["id"]), path=raw.get("path_with_namespace", ""),
                       default_branch=raw.get("default_branch") or "main",
                       web_url=raw.get("web_url", ""))

    def create(self, ref: str, variables: dict[str, str], name: str) -> Pipeline:
        """One pipeline named `name` (unique per submission) on `ref`. A create that may have
        reached GitLab (timeout, 5xx) is looked up by name before it is tried again."""
        body = {"ref": ref, "variables": [{"key": k, "value": v, "variable_type": "env_var"}
                                          for k, v in variables.items()]}
        path, why = f"{self.base}/pipeline", ""
        for attempt in range(1, self.settings.attempts + 1):
            if attempt > 1:
                try:
                    found = self.find(name)
                except GitLabUnavailable:
                    found = None
                if found is not None:
                    return found
            try:
                return _pipeline(self.http.http_post(path, post_data=body, **NO_SDK_RETRY))
            except Exception as exc:
                why, wait = self._transient(f"creating a pipeline on {ref}", exc, attempt)
            if attempt < self.settings.attempts:
                self.sleep(min(wait, self.settings.max_wait_s))
        raise GitLabUnavailable(f"GitLab at {redact(self.settings.url)} unreachable: creating "
                                f"a pipeline on {ref} failed {self.settings.attempts} times "
                                f"({why}); no pipeline of this run was found")

    def find(self, name: str) -> Pipeline | None:
        found = self._read("listing pipelines", lambda: self.http.http_list(
            f"{self.base}/pipelines", query_data={"name": name, "source": "api"},
            get_all=False, **NO_SDK_RETRY))
        return _pipeline(found[0]) if found else None

    def pipeline(self, pipeline_id: int) -> Pipeline:
        return _pipeline(self._read(f"reading pipeline {pipeline_id}", lambda: self.http.http_get(
            f"{self.base}/pipelines/{pipeline_id}", **NO_SDK_RETRY)))

    def job(self, pipeline_id: int, name: str) -> Job | None:
        """The pipeline's (latest) job called `name`, or None when it has none."""
        jobs = self._read(f"listing the jobs of pipeline {pipeline_id}", lambda: self.http.http_list(
            f"{self.base}/pipelines/{pipeline_id}/jobs", get_all=True, **NO_SDK_RETRY))
        for raw in jobs:  # newest first
            if raw.get("name") == name:
                return Job(id=int(raw["id"]), name=name, status=raw.get("status", ""),
                           web_url=raw.get("web_url", ""),
                           failure_reason=raw.get("failure_reason"))
        return None

    def cancel(self, pipeline_id: int) -> None:
        """Cancel every job of the pipeline (GitLab answers 200 whatever its state)."""
        self._read(f"canceling pipeline {pipeline_id}", lambda: self.http.http_post(
            f"{self.base}/pipelines/{pipeline_id}/cancel", **NO_SDK_RETRY))


def _reason(exc: Exception) -> str:
    """GitLab's message, flattened (it may be a string, a list or {"base": [...]})."""
    message = getattr(exc, "error_message", None) or str(exc)
    if isinstance(message, dict):
        message = "; ".join(str(m) for v in message.values()
                            for m in (v if isinstance(v, list) else [v]))
    elif isinstance(message, list):
        message = "; ".join(map(str, message))
    text = str(message).splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _pipeline(raw: Any) -> Pipeline:
    return Pipeline(id=int(raw["id"]), project_id=int(raw["project_id"]),
                    status=raw.get("status", ""), web_url=raw.get("web_url", ""))
