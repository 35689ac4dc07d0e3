"""Which registry a tracking URI gets: GitLab's MLflow API or an MLflow tracking store."""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tasks.adapters.gitlab_mlflow import GitLabRegistry, is_gitlab_mlflow, require_token
from tasks.adapters.mlflow_registry import Registry, is_http
from tasks.core.errors import TrackingUnavailable
from tasks.core.redact import redact
from tasks.core.settings import Settings


def check_reachable(uri: str, retries: int, delay_s: float = 1.0) -> None:
    """Fail fast with one line when an HTTP tracking server does not answer (bounded retries)."""
    if not is_http(uri):
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return
    parts = urllib.parse.urlsplit(uri)
    # urllib cannot send user:password from a URL (it takes it for the host); /health needs none
    url = urllib.parse.urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1],
                                   parts.path.rstrip("/") + "/health", "", ""))
    last = ""
    for attempt in range(1, retries + 1):
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status < 500:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return  # answered: auth or routing is the server's business, not reachability
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        if attempt < retries:
            time.sleep(delay_s * attempt)
    raise TrackingUnavailable(
        f"MLflow tracking server {redact(uri)} is unreachable after {retries} attempts ({last}); "
        "start it or point MLFLOW_TRACKING_URI at a running server"
    )


def open_registry(settings: Settings) -> Registry:
    """The registry of MLFLOW_TRACKING_URI, checked to be reachable (one line if not)."""
    uri = settings.tracking_uri
    if is_gitlab_mlflow(uri):
        require_token(uri, settings.tracking_token)
        return GitLabRegistry(uri, job_id=settings.ci.get("CI_JOB_ID"),
                              project_url=settings.ci.get("CI_PROJECT_URL"),
                              server_url=settings.ci.get("CI_SERVER_URL"),
                              audit_key=settings.resolve_audit_key())
    check_reachable(uri, settings.tracking_retries)
    return Registry(uri, settings.artifact_root, ui_url=settings.mlflow_ui_url)


connect: Any  # the Prefect task around open_registry: bound by __getattr__ on first use


def __getattr__(name: str) -> Any:
    """`connect`, the Prefect task flows open the registry with, built on first use: commands
    that only read the registry (`mlops status`, `history`, `audit verify`) never import Prefect."""
    if name != "connect":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from prefect import task

    global connect
    connect = task(name="connect-tracking")(open_registry)
    return connect
