"""What `mlops pools apply` and the laptop stack create beside the pools: the global `gpu`
concurrency limit and the automation that marks a silent flow run Crashed (Prefect's zombie-run
recipe: heartbeats stop, the run is crashed), both idempotent by name."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from deployments.pools import LimitsSpec
from tasks.core.gpu import GPU_LIMIT

ZOMBIE_AUTOMATION = "crash zombie flow runs"
HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
# any of these after a heartbeat means the run is alive or ended on its own
ALIVE_OR_DONE = [HEARTBEAT_EVENT, "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                 "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed",
                 "prefect.flow-run.Paused", "prefect.flow-run.Suspended"]


def zombie_automation(limits: LimitsSpec) -> Any:
    """A proactive trigger per flow run: after a heartbeat, nothing of ALIVE_OR_DONE within
    zombie_after_seconds → change the run's state to CRASHED."""
    from prefect.automations import AutomationCore
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    return AutomationCore(
        name=ZOMBIE_AUTOMATION,
        description=(f"A flow run that sent heartbeats and then none for "
                     f"{limits.zombie_after_seconds} s (its process or job died) is marked "
                     "Crashed. Created by `mlops pools apply` from deployments/pools.yaml."),
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            after={HEARTBEAT_EVENT},
            expect=set(ALIVE_OR_DONE),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=limits.zombie_after_seconds),
        ),
        actions=[ChangeFlowRunState(
            name=None, force=False, state=StateType.CRASHED,
            message=f"no heartbeat for {limits.zombie_after_seconds} s: the flow process or its "
                    "job died (marked by the zombie-run automation)")],
    )


def _same(current: Any, wanted: Any) -> bool:
    """Field by field (the trigger's event sets compare as sets, whatever order they came in)."""
    return all(getattr(current, key) == getattr(wanted, key)
               for key in ("name", "description", "enabled", "trigger", "actions"))


async def apply_zombie_automation(client: Any, limits: LimitsSpec) -> str:
    """'created' | 'updated' | 'unchanged'; duplicates of the name are removed."""
    wanted = zombie_automation(limits)
    found = await client.read_automations_by_name(ZOMBIE_AUTOMATION)
    if not found:
        await client.create_automation(wanted)
        return "created"
    for extra in found[1:]:
        await client.delete_automation(extra.id)
    if _same(found[0], wanted) and len(found) == 1:
        return "unchanged"
    await client.update_automation(found[0].id, wanted)
    return "updated"


async def apply_gpu_limit(client: Any, slots: int) -> str:
    """The global concurrency limit `gpu` with one slot per GPU runner (0 slots: left inactive,
    so a GPU training would wait for ever: a pool file without GPU runners has no GPU pool)."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate as Create
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate as Update
    from prefect.exceptions import ObjectNotFound

    try:
        current = await client.read_global_concurrency_limit_by_name(GPU_LIMIT)
    except ObjectNotFound:
        await client.create_global_concurrency_limit(Create(
            name=GPU_LIMIT, limit=slots, active=slots > 0))
        return "created"
    if current.limit == slots and current.active == (slots > 0):
        return "unchanged"
    await client.update_global_concurrency_limit(GPU_LIMIT, Update(
        limit=slots, active=slots > 0))
    return "updated"


async def apply_limits(specs: dict[str, Any], limits: LimitsSpec) -> list[str]:
    """The `gpu` limit and the zombie automation on the current Prefect server, one line each."""
    from prefect.client.orchestration import get_client

    from deployments.pools import gpu_slots

    slots = gpu_slots(specs)
    async with get_client() as client:
        gpu = await apply_gpu_limit(client, slots)
        zombie = await apply_zombie_automation(client, limits)
    return [f"global concurrency limit {GPU_LIMIT} ({slots} slots, one per GPU runner): {gpu}",
            f"automation {ZOMBIE_AUTOMATION!r} (heartbeats every {limits.heartbeat_seconds} s; "
            f"Crashed after {limits.zombie_after_seconds} s without one): {zombie}"]
