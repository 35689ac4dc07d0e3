"""The only code that talks to GitLab (python-gitlab): merge request notes, uploads, deployments
in environments, pipeline schedules. Optional: without settings every step says it was skipped.
GitLab never decides a pipeline's result: refused, unreachable or rate-limited calls retry a
bounded number of times (honouring Retry-After) and then become a warning."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tasks.core.redact import redact
from tasks.core.settings import GitLabSettings

log = logging.getLogger("mlops.gitlab")
T = TypeVar("T")
NO_SDK_RETRY: dict[str, Any] = {"obey_rate_limit": False, "retry_transient_errors": False}


def skipped(what: str) -> str:
    return (f"GitLab {what} skipped: set CI_SERVER_URL, CI_PROJECT_ID and MLOPS_GITLAB_TOKEN "
            "(a project access token with the api scope)")


class GitLab:
    """One project, through python-gitlab; every call goes through `call`."""

    def __init__(self, settings: GitLabSettings, sleep: Callable[[float], None] = time.sleep):
        import gitlab

        self.settings = settings
        self.sleep = sleep
        self.client = gitlab.Gitlab(settings.url, private_token=settings.resolve_token(),
                                    timeout=15)
        self.retry_after: str | None = None  # python-gitlab's errors drop the response headers
        self.client.session.hooks["response"].append(self._remember_retry_after)
        self.project = self.client.projects.get(settings.project_id, lazy=True)

    def _remember_retry_after(self, response, *args, **kwargs):
        self.retry_after = response.headers.get("Retry-After")
        return response

    def call(self, what: str, fn: Callable[[], T]) -> T | None:
        """Run one API call: retry 429/5xx/connection errors (Retry-After honoured, capped),
        then warn; a 401/403 is a warning naming the missing permission. Never raises."""
        import requests
        from gitlab.exceptions import GitlabError

        for attempt in range(1, self.settings.attempts + 1):
            try:
                return fn()
            except GitlabError as exc:
                code = exc.response_code or 0
                if code in (401, 403):
                    log.warning("GitLab refused %s (HTTP %s: %s): the token needs the api scope "
                                "and Developer role on project %s; skipped", what, code,
                                _reason(exc), self.settings.project_id)
                    return None
                if code != 429 and code < 500 and code != 0:
                    log.warning("GitLab rejected %s (HTTP %s: %s); skipped", what, code,
                                _reason(exc))
                    return None
                wait = _retry_after(self.retry_after, attempt)
                why = f"HTTP {code}" if code else _reason(exc)
            except requests.RequestException as exc:
                wait, why = float(2 ** (attempt - 1)), type(exc).__name__
            if attempt < self.settings.attempts:
                self.sleep(min(wait, self.settings.max_wait_s))
        log.warning("GitLab %s failed after %d attempts (%s) at %s; skipped", what,
                    self.settings.attempts, why, redact(self.settings.url))
        return None

    # -- merge requests ---------------------------------------------------------------------
    def upsert_note(self, iid: str, marker: str, body: str) -> dict[str, Any] | None:
        """Create the MR comment carrying `marker`, or update the one an earlier run left."""
        body = redact(body)

        def run() -> dict[str, Any]:
            mr = self.project.mergerequests.get(iid, lazy=True)
            for note in mr.notes.list(iterator=True, **NO_SDK_RETRY):
                if marker in (note.body or ""):
                    note.body = body
                    note.save(**NO_SDK_RETRY)
                    return {"id": note.id, "action": "updated"}
            note = mr.notes.create({"body": body}, **NO_SDK_RETRY)
            return {"id": note.id, "action": "created"}

        return self.call(f"merge request !{iid} comment", run)

    def upload(self, path: str) -> str | None:
        """Upload a file to the project; its markdown (an image link for PNGs)."""
        from pathlib import Path

        def run() -> str:
            return self.project.upload(Path(path).name, filepath=path, **NO_SDK_RETRY)["markdown"]

        return self.call(f"upload of {os.path.basename(path)}", run)

    # -- environments -----------------------------------------------------------------------
    def record_deployment(self, environment: str, status: str, sha: str, ref: str
                          ) -> dict[str, Any] | None:
        def run() -> dict[str, Any]:
            made = self.project.deployments.create(
                {"environment": environment, "sha": sha, "ref": ref, "tag": False,
                 "status": status}, **NO_SDK_RETRY)
            return {"id": made.id, "environment": environment, "status": status}

        return self.call(f"deployment to {environment}", run)

    # -- wiki -------------------------------------------------------------------------------
    def prepend_wiki_row(self, slug: str, header: str, row: str, keep: int = 400) -> str | None:
        """Add a row to the top of the table on a wiki page, creating the page with `header`
        (title line + table head) the first time; older rows beyond `keep` are dropped."""
        from gitlab.exceptions import GitlabGetError

        header, row = redact(header), redact(row)

        def run() -> str:
            try:
                page = self.project.wikis.get(slug, **NO_SDK_RETRY)
            except GitlabGetError as exc:
                if exc.response_code != 404:
                    raise
                self.project.wikis.create({"title": slug, "content": f"{header}\n{row}\n",
                                           "format": "markdown"}, **NO_SDK_RETRY)
                return "created"
            lines = (page.content or header).rstrip("\n").split("\n")
            head = len(header.rstrip("\n").split("\n"))
            page.content = "\n".join([*lines[:head], row, *lines[head:head + keep - 1]]) + "\n"
            page.save(**NO_SDK_RETRY)
            return "updated"

        return self.call(f"wiki page {slug}", run)

    # -- pipeline schedules -----------------------------------------------------------------
    def pipeline_schedules(self) -> list[dict[str, Any]] | None:
        def run() -> list[dict[str, Any]]:
            out = []
            for s in self.project.pipelineschedules.list(iterator=True, **NO_SDK_RETRY):
                full = self.project.pipelineschedules.get(s.id, **NO_SDK_RETRY)
                attrs = dict(full.attributes)
                attrs["variables"] = {v["key"]: v["value"] for v in attrs.get("variables") or []}
                out.append(attrs)
            return out

        return self.call("pipeline schedules", run)

    def deactivate_schedule(self, schedule_id: int) -> bool:
        def run() -> bool:
            schedule = self.project.pipelineschedules.get(schedule_id, lazy=True)
            schedule.active = False
            schedule.save(**NO_SDK_RETRY)
            return True

        return bool(self.call(f"deactivating pipeline schedule {schedule_id}", run))


def _reason(exc: Exception) -> str:
    text = str(getattr(exc, "error_message", "") or exc).splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _retry_after(value: str | None, attempt: int) -> float:
    try:
        return max(0.0, float(value)) if value is not None else float(2 ** (attempt - 1))
    except ValueError:
        return float(2 ** (attempt - 1))


def open_gitlab(settings: GitLabSettings | None) -> GitLab | None:
    """The project's GitLab, or None when GitLab is not configured (every GitLab step is then
    skipped)."""
    return GitLab(settings) if settings else None


def open_gitlab_quietly(settings: GitLabSettings | None) -> GitLab | None:
    """open_gitlab for mirrors: a GitLab that cannot be opened (its token block unreadable) is a
    warning, never a reason to skip what the mirror follows."""
    try:
        return open_gitlab(settings)
    except Exception as exc:  # the secret block, the network: none of it may stop a release
        log.warning("GitLab not available for mirroring (%s); continuing without it",
                    type(exc).__name__)
        return None
