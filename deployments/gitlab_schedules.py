"""GitLab pipeline schedules → Prefect deployment schedules: read, translated, shown as
prefect.yaml entries, and (with --apply) created on the server while the GitLab ones are
deactivated. A schedule Prefect cannot take is reported and left alone."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from deployments.manifest import TRAINING_FLOW
from deployments.schedules import training_data_date
from tasks.core.errors import ConfigError

TRUE = {"1", "true", "yes", "on"}


@dataclass
class Migration:
    """One GitLab schedule and what it becomes."""

    gitlab_id: int
    description: str
    cron: str
    timezone: str
    active: bool
    targets: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None

    @property
    def slug(self) -> str:
        return f"gitlab-{self.gitlab_id}"

    @property
    def ok(self) -> bool:
        return self.problem is None and self.active


def check_cron(cron: str, timezone: str) -> str | None:
    """Why Prefect would refuse this cron/timezone, or None."""
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    try:
        CronSchedule(cron=cron, timezone=timezone)
    except (ValidationError, ValueError) as exc:
        first = str(exc).splitlines()
        detail = next((line.strip() for line in first if "Value error" in line or "Invalid" in line),
                      first[0] if first else "invalid")
        return f"Prefect cannot take cron {cron!r} ({timezone}): {detail.removeprefix('Value error, ')}"
    return None


def plan(schedules: list[dict[str, Any]], models: list[str]) -> list[Migration]:
    """Which training deployments each GitLab schedule starts, and with which parameters:
    MODEL / MODELS name models, SCHEDULED_RETRAIN=true means all of them; TRAINING_DATA_DATE
    YYYY-MM-DD becomes the as_of parameter ("latest" or none: no as_of, the newest data)."""
    out = []
    for s in schedules:
        variables = s.get("variables") or {}
        m = Migration(gitlab_id=int(s["id"]), description=s.get("description") or "",
                      cron=s["cron"], timezone=s.get("cron_timezone") or "UTC",
                      active=bool(s.get("active", True)))
        named = [n for n in re.split(r"[\s,]+", variables.get("MODELS") or variables.get("MODEL")
                                     or "") if n]
        if named:
            unknown = [n for n in named if n not in models]
            if unknown:
                m.problem = f"names model(s) without a config: {', '.join(unknown)}"
            m.targets = [f"{TRAINING_FLOW}/{n}" for n in named if n in models]
        elif variables.get("SCHEDULED_RETRAIN", "").lower() in TRUE:
            m.targets = [f"{TRAINING_FLOW}/{n}" for n in models]
        else:
            m.problem = "neither SCHEDULED_RETRAIN=true nor MODEL(S): not a retraining schedule"
        try:
            as_of = training_data_date(variables.get("TRAINING_DATA_DATE"))
        except ConfigError as exc:
            m.problem = str(exc)
        else:
            if as_of:
                m.parameters["as_of"] = as_of.isoformat()
        m.problem = check_cron(m.cron, m.timezone) or m.problem
        out.append(m)
    return out


def yaml_entries(m: Migration) -> str:
    """The schedules: entry to paste under each target deployment in prefect.yaml."""
    params = "".join(f"\n      {k}: {v!r}" for k, v in m.parameters.items())
    return (f"    # {', '.join(m.targets)}  (was GitLab schedule {m.gitlab_id}: {m.description})\n"
            f"    - cron: \"{m.cron}\"\n      timezone: {m.timezone}\n      slug: {m.slug}\n"
            f"      active: true" + (f"\n      parameters:{params}" if params else ""))


async def apply(migrations: list[Migration], gitlab) -> list[str]:
    """Create the Prefect schedules (idempotent by slug), then deactivate the GitLab schedule
    only when every target deployment has its schedule."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.exceptions import ObjectNotFound

    lines = []
    async with get_client() as client:
        for m in (m for m in migrations if m.ok):
            done = 0
            for target in m.targets:
                try:
                    deployment = await client.read_deployment_by_name(target)
                except ObjectNotFound:
                    lines.append(f"{target}: not deployed on this server; run prefect deploy first")
                    continue
                existing = {s.slug for s in await client.read_deployment_schedules(deployment.id)}
                if m.slug in existing:
                    lines.append(f"{target}: schedule {m.slug} already there")
                else:
                    await client.create_deployment_schedules(deployment.id, [
                        DeploymentScheduleCreate(
                            schedule=CronSchedule(cron=m.cron, timezone=m.timezone), active=True,
                            slug=m.slug, parameters=m.parameters)])
                    lines.append(f"{target}: schedule {m.slug} created ({m.cron} {m.timezone})")
                done += 1
            if done == len(m.targets) and m.targets:
                off = gitlab.deactivate_schedule(m.gitlab_id)
                lines.append(f"GitLab schedule {m.gitlab_id}: "
                             f"{'deactivated' if off else 'NOT deactivated (see warning)'}")
    return lines
