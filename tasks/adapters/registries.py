"""Which registry a tracking URI gets: GitLab's MLflow API or an MLflow tracking store."""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.adapters.gitlab_mlflow import GitLabRegistry, is_gitlab_mlflow, require_token
from tasks.adapters.mlflow_registry import Registry, is_http
from tasks.adapters.mlflow_rest import DENIED, RestError, RestRegistry
from tasks.adapters.stack_state import served_store_url
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


def open_registry(settings: Settings, endpoint: str | None = None) -> Registry:
    """The registry of MLFLOW_TRACKING_URI, checked to be reachable (one line if not). A SQLite
    file the local stack's MLflow server serves is written through that server (endpoint, when
    the caller already found it)."""
    uri = settings.tracking_uri
    if is_gitlab_mlflow(uri):
        require_token(uri, settings.tracking_token)
        return GitLabRegistry(uri, job_id=settings.ci.get("CI_JOB_ID"),
                              project_url=settings.ci.get("CI_PROJECT_URL"),
                              server_url=settings.ci.get("CI_SERVER_URL"),
                              audit_key=settings.resolve_audit_key())
    check_reachable(uri, settings.tracking_retries)
    return Registry(uri, settings.artifact_root, ui_url=settings.mlflow_ui_url,
                    endpoint=endpoint or served_store_url(settings))


def open_reads(settings: Settings) -> Registry | RestRegistry:
    """The registry to read where an MLflow server serves the store (an http(s) URI, or the
    local stack's server on this SQLite file): its REST API, so reading imports no MLflow;
    otherwise (GitLab's MLflow API, whose run pages need the CI project; a SQLite file no
    server serves) the registry of open_registry, which can write as well."""
    uri = settings.tracking_uri
    if is_gitlab_mlflow(uri):
        return open_registry(settings)
    if is_http(uri):
        check_reachable(uri, settings.tracking_retries)
        return _readable(RestRegistry(uri, settings.tracking_token, ui_url=settings.mlflow_ui_url),
                         settings)
    served = served_store_url(settings)
    if served:
        return RestRegistry(uri, ui_url=settings.mlflow_ui_url, endpoint=served)
    return open_registry(settings)


def _readable(reads: RestRegistry, settings: Settings) -> Registry | RestRegistry:
    """`reads`, unless the server refuses it the credentials only MLflow's client sends (its
    MLFLOW_TRACKING_USERNAME and _PASSWORD): then the registry of open_registry (one request
    to find out)."""
    try:
        reads.client.call("registered-models/search", {"max_results": 1})
    except RestError as exc:
        if exc.error_code in DENIED:
            return open_registry(settings)
        raise
    return reads


def open_writes(reads: Registry | RestRegistry, settings: Settings) -> Registry:
    """The registry a run writes to: the one it has read from when that one writes, else the
    registry of open_registry, opened now (through the server it read from: not looked up
    again)."""
    return reads if isinstance(reads, Registry) else open_registry(settings, reads.endpoint)


# the Prefect tasks flows open the registry with, bound by __getattr__ on first use: commands
# that only read the registry (`mlops status`, `history`, `audit verify`) never import Prefect
connect: Any  # open_registry
read_tracking: Any  # open_reads: a training run's plan and reuse
connect_writes: Any  # open_writes: a training run that trains
_TASKS: dict[str, tuple[str, Callable[..., Any]]] = {
    "connect": ("connect-tracking", open_registry),
    "read_tracking": ("read-tracking", open_reads),
    "connect_writes": ("connect-tracking", open_writes)}


def __getattr__(name: str) -> Any:
    if name not in _TASKS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from prefect import task

    task_name, fn = _TASKS[name]
    bound: Any = task(name=task_name)(fn)
    globals()[name] = bound
    return bound
