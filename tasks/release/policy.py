"""Who may decide on a production change: listed approvers, a verified identity when the model's
config asks for one, and never the person who built the version (four eyes). Pure checks."""

from __future__ import annotations

from collections.abc import Mapping

from tasks.contracts.release import Identity
from tasks.core.config import ModelConfig


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def built_the_version(who: Identity, tags: Mapping[str, str]) -> str | None:
    """Why `who` counts as an author of the version (pipeline triggerer, commit author), or None."""
    built_by = tags.get("built_by", "")
    author = tags.get("commit_author", "")  # "Name <email>"
    name, _, email = author.partition("<")
    email = email.rstrip(">").strip().lower()
    if built_by and _norm(built_by) == _norm(who.username):
        return f"{who.username} built it (pipeline triggered by {built_by})"
    if name.strip() and _norm(name) in {_norm(who.username), _norm(who.name or "-")}:
        return f"{who.username} wrote its commit ({author})"
    if email and email.split("@")[0] == who.username.lower():
        return f"{who.username} wrote its commit ({author})"
    return None


def refusal(cfg: ModelConfig, who: Identity, tags: Mapping[str, str]) -> str | None:
    """Why `who` may not approve or promote this version of the model, or None when they may."""
    spec = cfg.deploy.production
    if not who.username.strip():
        return "an approver name is required"
    if spec.identity == "gitlab" and not who.verified:
        return (f"{cfg.name} needs a verified approver (deploy.production.identity: gitlab): "
                f"{who.username!r} was typed, not proven; answer with `mlops approve {cfg.name}` "
                "and MLOPS_APPROVER_TOKEN set to your own GitLab token")
    if not spec.may_approve(who.username):
        allowed = ", ".join(spec.approvers or [])
        return f"{who.username} may not approve {cfg.name} (approvers: {allowed})"
    author = built_the_version(who, tags)
    if author:
        return f"four eyes: {author}; someone else must approve it"
    return None
