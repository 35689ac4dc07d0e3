"""What `mlops pools apply` and the laptop stack create beside the pools: the global `gpu`
concurrency limit, the automation that marks a silent flow run Crashed (Prefect's zombie-run
recipe: heartbeats stop, the run is crashed) and the one that schedules a crashed run again,
all idempotent by name."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from deployments.pools import LimitsSpec
from tasks.core.gpu import GPU_LIMIT

ZOMBIE_AUTOMATION = "crash zombie flow runs"
RERUN_AUTOMATION = "re-run crashed flow runs"
HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
CRASHED_EVENT = "prefect.flow-run.Crashed"
# its lost runs are not re-run: the study retries their trials and the parent run goes on
HPO_WORKER_FLOW = "hpo-worker"  # flows/hpo_worker.py (a unit test keeps the two equal)
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


def rerun_automation(limits: LimitsSpec) -> Any:
    """A proactive trigger per flow run of a deployment: Crashed on a run count of at most
    crashed_reruns, then no other state change for rerun_after_seconds → change its state to
    Scheduled (AwaitingRetry): the same run, parameters and job variables, taken by its pool's
    worker again (not tuning workers: see HPO_WORKER_FLOW). The quiet period lets a late second
    crash report of the dead run (a process worker reports one after its child did) land on a
    Crashed run, where Prefect aborts it, instead of on the re-run. The re-run's own crash has a
    higher run count and is left alone."""
    from prefect.automations import AutomationCore
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    return AutomationCore(
        name=RERUN_AUTOMATION,
        description=(f"A deployment's flow run that crashed (its process, job or runner died) is "
                     f"scheduled again {limits.rerun_after_seconds} s later, at most "
                     f"{limits.crashed_reruns} time(s): a crash after that stays Crashed. Created "
                     "by `mlops pools apply` from deployments/pools.yaml (limits)."),
        enabled=limits.crashed_reruns > 0,
        trigger=EventTrigger(
            # run-count: how many times the run has entered Running (the event's own label)
            match={"prefect.resource.id": "prefect.flow-run.*",
                   "prefect.run-count": [str(n) for n in range(1, limits.crashed_reruns + 1)]},
            match_related=[{"prefect.resource.role": "deployment"},  # only those can be rescheduled
                           {"prefect.resource.role": "flow",
                            "prefect.resource.name": f"!{HPO_WORKER_FLOW}"}],
            after={CRASHED_EVENT},
            expect={"prefect.flow-run.*"},  # anything else happened to it: someone decided
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=limits.rerun_after_seconds),
        ),
        actions=[ChangeFlowRunState(
            name="AwaitingRetry", force=False, state=StateType.SCHEDULED,
            message="crashed: scheduled again by the re-run automation (limits.crashed_reruns)")],
    )


def _same(current: Any, wanted: Any) -> bool:
    """Field by field (the trigger's event sets compare as sets, whatever order they came in)."""
    return all(getattr(current, key) == getattr(wanted, key)
               for key in ("name", "description", "enabled", "trigger", "actions"))


async def apply_automation(client: Any, wanted: Any) -> str:
    """'created' | 'updated' | 'unchanged'; duplicates of the name are removed."""
    found = await client.read_automations_by_name(wanted.name)
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
        zombie = await apply_automation(client, zombie_automation(limits))
        rerun = await apply_automation(client, rerun_automation(limits))
    return [f"global concurrency limit {GPU_LIMIT} ({slots} slots, one per GPU runner): {gpu}",
            f"automation {ZOMBIE_AUTOMATION!r} (heartbeats every {limits.heartbeat_seconds} s; "
            f"Crashed after {limits.zombie_after_seconds} s without one): {zombie}",
            f"automation {RERUN_AUTOMATION!r} (a crashed deployment run scheduled again "
            f"{limits.rerun_after_seconds} s later, at most {limits.crashed_reruns} time(s)): "
            f"{rerun}"]
