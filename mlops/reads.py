"""The registry a read-only command reads (`history`, `audit verify`, `status`, and the
up-to-date check of `mlops train`): MLflow's REST API wherever a tracking server serves the
store (GitLab's MLflow API included), so the command imports no MLflow; otherwise (a SQLite file
no server serves) the full registry."""

from __future__ import annotations

from typing import Any

from tasks.core.settings import Settings


def served_store_url(found: Settings) -> str | None:
    """The local stack's MLflow server when it serves this very store (its stack.json says
    which store it was started on), else None."""
    if not found.use_local_stack or found.tracking_uri.startswith(("http://", "https://")):
        return None
    from mlops.stack import read_state

    urls = read_state(found.stack_dir)
    if not urls or not urls.get("mlflow_url") or urls.get("mlflow_store") != found.tracking_uri:
        return None
    return urls["mlflow_url"]


def read_registry(found: Settings) -> Any:
    """A RestRegistry (reads only) where an MLflow server answers for the store, with GitLab's
    rules on GitLab's MLflow API; else the Registry of open_registry. Each keeps the store's
    own URI, which names its audit anchors."""
    from tasks.adapters.gitlab_mlflow import GitLabRestRegistry, is_gitlab_mlflow
    from tasks.adapters.mlflow_rest import RestRegistry
    from tasks.adapters.registries import check_reachable, open_registry

    uri = found.tracking_uri
    if is_gitlab_mlflow(uri):  # as open_registry: no reachability probe, the token required
        return GitLabRestRegistry(uri, found.tracking_token, audit_key=found.resolve_audit_key())
    if uri.startswith(("http://", "https://")):
        check_reachable(uri, found.tracking_retries)
        return RestRegistry(uri, found.tracking_token, ui_url=found.mlflow_ui_url)
    served = served_store_url(found)
    if served:
        return RestRegistry(uri, ui_url=found.mlflow_ui_url, endpoint=served)
    return open_registry(found)
