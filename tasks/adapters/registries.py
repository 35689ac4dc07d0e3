"""Which registry a tracking URI gets: GitLab's MLflow API or an MLflow tracking store."""

from __future__ import annotations

from tasks.adapters.gitlab_mlflow import is_gitlab_mlflow, open_gitlab_registry
from tasks.adapters.mlflow_registry import Registry, check_reachable
from tasks.core.settings import Settings


def open_registry(settings: Settings) -> Registry:
    if is_gitlab_mlflow(settings.tracking_uri):
        return open_gitlab_registry(settings)
    check_reachable(settings.tracking_uri, settings.tracking_retries)
    return Registry(settings)
