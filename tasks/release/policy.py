"""Who may decide on a production change: listed approvers, a verified identity when the
organisation's policy or the model asks for one, and never the person who built the version
(four eyes, read from the facts sealed at registration). Pure checks."""

from __future__ import annotations

from collections.abc import Mapping

from tasks.contracts.release import Identity
from tasks.core.governance import Governance

GITLAB_ENVIRONMENT = "gitlab-environment"  # Identity.via of an approval read from GitLab


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def built_the_version(who: Identity, facts: Mapping[str, str]) -> str | None:
    """Why `who` counts as an author of the version (pipeline triggerer, commit author), or None."""
    built_by = facts.get("built_by", "")
    author = facts.get("commit_author", "")  # "Name <email>"
    name, _, email = author.partition("<")
    email = email.rstrip(">").strip().lower()
    if built_by and _norm(built_by) == _norm(who.username):
        return f"{who.username} built it (pipeline triggered by {built_by})"
    if name.strip() and _norm(name) in {_norm(who.username), _norm(who.name or "-")}:
        return f"{who.username} wrote its commit ({author})"
    if email and email.split("@")[0] == who.username.lower():
        return f"{who.username} wrote its commit ({author})"
    return None


def refusal(rule: Governance, who: Identity, facts: Mapping[str, str] | None) -> str | None:
    """Why `who` may not approve or promote this version, or None when they may. `facts` are
    the version's sealed facts (None: a rollback, where four eyes does not apply)."""
    if not who.username.strip():
        return "an approver name is required"
    if rule.identity == "gitlab-environment" and who.via != GITLAB_ENVIRONMENT:
        return (f"{rule.model} is approved in GitLab (identity gitlab-environment): approve the "
                f"blocked production deployment of the deploy run there; {who.username!r} "
                "did not come from GitLab's deployment approvals")
    if rule.identity == "gitlab" and not who.verified:
        return (f"{rule.model} needs a verified approver (identity gitlab): {who.username!r} "
                f"was typed, not proven; answer with `mlops approve {rule.model}` and "
                "MLOPS_APPROVER_TOKEN set to your own GitLab token")
    if not rule.may_approve(who.username):
        allowed = ", ".join(rule.approvers or [])
        return f"{who.username} may not approve {rule.model} (approvers: {allowed})"
    if facts is None or not rule.four_eyes:
        return None
    if not facts.get("built_by"):
        return ("four eyes: nobody is recorded as having built this version (no CI user, user "
                "or git identity when it was registered), so it cannot go to production; "
                "retrain it with one")
    author = built_the_version(who, facts)
    if author:
        return f"four eyes: {author}; someone else must approve it"
    return None
