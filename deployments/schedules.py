"""Deployment schedules (the replacement for GitLab cron retrains) and their next runs."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from deployments.manifest import cron_schedules, load_manifest
from tasks.core.errors import ConfigError

LATEST = "latest"  # GitLab schedules (seed 003) say TRAINING_DATA_DATE: "latest" for the newest data
ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class ScheduleRow:
    deployment: str
    slug: str
    cron: str
    timezone: str
    active: bool
    next_run: datetime | None
    source: str  # 'server' (a scheduled flow run) or 'cron' (computed)


def training_data_date(value: str | None) -> date | None:
    """TRAINING_DATA_DATE as an as-of date: empty or "latest" is none (the newest data), a
    YYYY-MM-DD day is a backfill; anything else is a ConfigError naming both forms."""
    text = (value or "").strip()
    if text in ("", LATEST):
        return None
    try:
        if ISO_DAY.fullmatch(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise ConfigError(f"TRAINING_DATA_DATE={value!r} is neither \"{LATEST}\" (the newest data) "
                      "nor a date YYYY-MM-DD (a backfill)")


@cache
def _croniter() -> Any:
    """The croniter Prefect's server computes cron schedules with (`prefect._vendor.croniter`),
    loaded from its file as a plain module: importing it by name imports all of Prefect first
    (about 1.5 s of CPU against 0.05 s). It imports only the standard library, pytz and dateutil."""
    spec = importlib.util.find_spec("prefect")  # finds the package without running it
    if spec is None or spec.origin is None:
        raise ImportError("prefect is not installed")
    source = Path(spec.origin).parent / "_vendor" / "croniter" / "croniter.py"
    loaded = importlib.util.spec_from_file_location("_mlops_prefect_croniter", source)
    if loaded is None or loaded.loader is None:
        raise ImportError(f"cannot load {source}")
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module.croniter


def next_cron(cron: str, tz: str | None, after: datetime | None = None) -> datetime:
    """The next time a cron expression fires in its timezone (UTC when none is given)."""
    zone = ZoneInfo(tz or "UTC")
    start = (after or datetime.now(UTC)).astimezone(zone)
    return _croniter()(cron, start).get_next(datetime)


def from_manifest(path: Path, now: datetime | None = None, *,
                  validate: bool = True) -> list[ScheduleRow]:
    """The cron schedules of a prefect.yaml with their next runs; `validate=False` reads the
    file as plain YAML (no Prefect import), for read-only displays."""
    pairs = ([(d.full_name, d.schedules) for d in load_manifest(path)] if validate
             else cron_schedules(path))
    rows = []
    for name, schedules in pairs:
        for s in schedules:
            if "cron" not in s:
                continue
            rows.append(ScheduleRow(name, s.get("slug", ""), s["cron"],
                                    s.get("timezone") or "UTC", bool(s.get("active", True)),
                                    next_cron(s["cron"], s.get("timezone"), now), "cron"))
    return rows


async def from_server() -> list[ScheduleRow]:
    """Every deployment's schedules as the server holds them, with its next scheduled run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    rows = []
    async with get_client() as client:
        flows = {f.id: f.name for f in await client.read_flows()}
        for dep in sorted(await client.read_deployments(), key=lambda d: (flows.get(d.flow_id, ""), d.name)):
            name = f"{flows.get(dep.flow_id, '?')}/{dep.name}"
            scheduled = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=1)
            for sched in dep.schedules:
                cron = getattr(sched.schedule, "cron", None)
                tz = getattr(sched.schedule, "timezone", None) or "UTC"
                when: datetime | None
                if scheduled and scheduled[0].expected_start_time:
                    when, source = scheduled[0].expected_start_time, "server"
                else:
                    when, source = (next_cron(cron, tz) if cron else None), "cron"
                rows.append(ScheduleRow(name, sched.slug or "", cron or str(sched.schedule), tz,
                                        bool(sched.active and not dep.paused), when, source))
    return rows


def from_server_http(api_url: str) -> list[ScheduleRow]:
    """from_server's rows read with plain HTTP (no Prefect import); raises
    tasks.core.plain_http.NeedsClient where the server wants credentials."""
    from tasks.adapters.prefect_rest import call, flow_runs, when

    flows = {f["id"]: f["name"] for f in call(api_url, "flows/filter", {}) or []}
    rows = []
    deployments = call(api_url, "deployments/filter", {}) or []
    for dep in sorted(deployments, key=lambda d: (flows.get(d["flow_id"], ""), d["name"])):
        name = f"{flows.get(dep['flow_id'], '?')}/{dep['name']}"
        scheduled = flow_runs(api_url, [], states=["SCHEDULED"], deployment_ids=[dep["id"]],
                              sort="EXPECTED_START_TIME_ASC", limit=1)
        for sched in dep.get("schedules") or []:
            schedule = sched.get("schedule") or {}
            cron, tz = schedule.get("cron"), schedule.get("timezone") or "UTC"
            first = when(scheduled[0].get("expected_start_time")) if scheduled else None
            at = first or (next_cron(cron, tz) if cron else None)
            source = "server" if first is not None else "cron"
            rows.append(ScheduleRow(name, sched.get("slug") or "", cron or str(schedule), tz,
                                    bool(sched.get("active") and not dep.get("paused")), at,
                                    source))
    return rows
