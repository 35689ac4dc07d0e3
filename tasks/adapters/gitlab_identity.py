"""Who an approver is, according to GitLab: the user behind their own token (`GET /user`), and
approvals they signed in GitLab (a comment on the version's commit, written with that token, that
the pipeline reads back with its own). Unlike the rest of the GitLab adapter this fails closed:
an identity GitLab cannot confirm is refused, never assumed."""

from __future__ import annotations

import re
from typing import Any

from tasks.core.errors import ApprovalError
from tasks.core.redact import redact
from tasks.core.settings import GitLabSettings

APPROVAL_MARK = "prefect-mlops approval"
_MARK = re.compile(rf"<!-- {APPROVAL_MARK} run=(?P<run>[0-9a-f-]+) decision=(?P<decision>\w+) -->")


def _client(settings: GitLabSettings, token: str):
    import gitlab

    return gitlab.Gitlab(settings.url, private_token=token, timeout=15,
                         retry_transient_errors=False)


def _refused(what: str, exc: Exception) -> ApprovalError:
    from gitlab.exceptions import GitlabError

    code = getattr(exc, "response_code", None) if isinstance(exc, GitlabError) else None
    if code in (401, 403):
        return ApprovalError(f"GitLab refused {what} (HTTP {code}): MLOPS_APPROVER_TOKEN must be "
                             "your own valid GitLab token with the api scope")
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ApprovalError(f"GitLab could not confirm {what} ({redact(reason)[:160]}); nothing was "
                         f"approved")


def whoami(settings: GitLabSettings, token: str) -> dict[str, Any]:
    """The GitLab user a token belongs to: id, username, name. Bots, blocked users and tokens
    GitLab refuses are refused."""
    try:
        client = _client(settings, token)
        client.auth()
        user = client.user.attributes
    except Exception as exc:  # python-gitlab, requests and connection errors alike
        raise _refused("the approver's identity", exc) from None
    if user.get("bot"):
        raise ApprovalError(f"{user.get('username')} is a bot account: approvals need a person's "
                            "own token")
    if user.get("state", "active") != "active":
        raise ApprovalError(f"GitLab user {user.get('username')} is {user.get('state')}: refused")
    return {"id": int(user["id"]), "username": user["username"], "name": user.get("name", "")}


def approval_note(run_id: str, decision: str, model: str, version: str, comment: str) -> str:
    return (f"<!-- {APPROVAL_MARK} run={run_id} decision={decision} -->\n"
            f"**{decision}** of `{model}` v{version} for production (Prefect flow run {run_id})"
            + (f": {comment}" if comment else ""))


def sign_approval(settings: GitLabSettings, token: str, sha: str, note: str) -> None:
    """Leave the approval on the version's commit, written with the approver's own token."""
    try:
        project = _client(settings, token).projects.get(settings.project_id, lazy=True)
        project.commits.get(sha, lazy=True).comments.create({"note": note})
    except Exception as exc:
        raise _refused(f"the approval comment on commit {sha[:12]}", exc) from None


def signed_approvals(settings: GitLabSettings, sha: str, run_id: str) -> list[dict[str, Any]]:
    """Approvals signed in GitLab for one flow run, oldest first, read with the pipeline's own
    token: [{"decision", "user_id", "username"}]."""
    try:
        project = _client(settings, settings.resolve_token()).projects.get(settings.project_id,
                                                                           lazy=True)
        comments = project.commits.get(sha, lazy=True).comments.list(get_all=True)
    except Exception as exc:
        raise _refused(f"the approvals on commit {sha[:12]}", exc) from None
    found = []
    for comment in comments:
        mark = _MARK.search(comment.attributes.get("note") or "")
        if mark and mark.group("run") == run_id:
            author = comment.attributes.get("author") or {}
            found.append({"decision": mark.group("decision"), "user_id": author.get("id"),
                          "username": author.get("username")})
    return found
