"""Reads from a Prefect server's REST API with plain HTTP, for commands that only read
(`mlops status`, the audit anchor): importing Prefect's client costs more CPU than such a
command may spend. A server that asks for credentials (which only Prefect's own settings hold)
raises NeedsClient (tasks/core/plain_http.py), and the caller reads through Prefect's client
instead."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tasks.core.errors import MlopsError
from tasks.core.plain_http import NoAnswer, request_json
from tasks.core.redact import redact


class PrefectUnavailable(MlopsError):
    """The Prefect server did not answer a read."""


def call(api_url: str, path: str, body: dict[str, Any] | None = None,
         timeout_s: float = 30) -> Any:
    """GET (no body) or POST (JSON body) one API path; None for 404, NeedsClient
    (tasks.core.plain_http) when the server wants credentials."""
    try:
        return request_json(f"{api_url.rstrip('/')}/{path.lstrip('/')}", body, timeout_s)
    except NoAnswer as exc:
        if exc.status is not None:
            raise PrefectUnavailable(f"Prefect server {redact(api_url)}: {path} answered HTTP "
                                     f"{exc.status}") from None
        raise PrefectUnavailable(f"Prefect server {redact(api_url)} did not answer {path} "
                                 f"({getattr(exc.cause, 'reason', exc.cause)})") from None


def flow_runs(api_url: str, flows: list[str], *, states: list[str] | None = None,
              not_states: list[str] | None = None, tags: list[str] | None = None,
              deployment_ids: list[str] | None = None, sort: str | None = None,
              limit: int | None = None) -> list[dict[str, Any]]:
    """POST /flow_runs/filter, the filters Prefect's client builds for read_flow_runs."""
    state: dict[str, Any] = {}
    if states:
        state["any_"] = states
    if not_states:
        state["not_any_"] = not_states
    runs: dict[str, Any] = {**({"state": {"type": state}} if state else {}),
                            **({"tags": {"all_": tags}} if tags else {})}
    body: dict[str, Any] = {"flow_runs": runs,
                            **({"flows": {"name": {"any_": flows}}} if flows else {}),
                            **({"deployments": {"id": {"any_": deployment_ids}}}
                               if deployment_ids else {}),
                            **({"sort": sort} if sort else {}),
                            **({"limit": limit} if limit else {})}
    return call(api_url, "flow_runs/filter", body) or []


def when(text: str | None) -> datetime | None:
    """An API timestamp as an aware datetime."""
    return datetime.fromisoformat(text) if text else None
