"""The registry a read-only command reads (`history`, `audit verify`, `status`, and the
up-to-date check of `mlops train`): MLflow's REST API wherever a tracking server serves the
store (GitLab's MLflow API included), so the command imports no MLflow; otherwise (a SQLite file
no server serves) the full registry."""

from __future__ import annotations

from typing import Any

from tasks.core.settings import Settings


def read_registry(found: Settings) -> Any:
    """A RestRegistry (reads only) where an MLflow server answers for the store, with GitLab's
    rules on GitLab's MLflow API; else the Registry of open_registry. Each keeps the store's
    own URI, which names its audit anchors."""
    from tasks.adapters.gitlab_mlflow import GitLabRestRegistry, is_gitlab_mlflow
    from tasks.adapters.registries import open_reads

    uri = found.tracking_uri
    if is_gitlab_mlflow(uri):  # as open_registry: no reachability probe, the token required
        return GitLabRestRegistry(uri, found.tracking_token, audit_key=found.resolve_audit_key())
    return open_reads(found)
