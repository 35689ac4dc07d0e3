"""The laptop's own work pools and workers (`mlops server start`): cpu-runners and gpu-runners
as process pools with their `laptop:` env (deployments/pools.yaml), one process worker each,
started with everything a flow run needs (the stack's Prefect API and MLflow UI, MLOPS_HOME,
the project checkout); and `mlops server stop --purge`, which removes what was deployed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path

from mlops.stack import BIN, Service
from tasks.core.settings import Settings

PROJECT = Path(__file__).resolve().parents[1]  # the checkout this mlops runs from


def api_url(found: Settings) -> str:
    return f"http://127.0.0.1:{found.prefect_port}/api"


def worker_env(found: Settings, base_env: Mapping[str, str]) -> dict[str, str]:
    """What a worker's flow runs need: the stack's Prefect API, the MLflow UI for links and
    plot images, this MLOPS_HOME and config folder as absolute paths, and the checkout the
    pull step enters (MLOPS_PROJECT_DIR, unless set)."""
    env = dict(base_env)
    env.update(PREFECT_API_URL=api_url(found), MLOPS_HOME=str(found.home),
               MLOPS_CONFIG_DIR=str(found.config_dir.resolve()),
               MLOPS_PROJECT_DIR=env.get("MLOPS_PROJECT_DIR") or str(PROJECT))
    if found.tracking_uri.startswith("sqlite:") and not env.get("MLOPS_MLFLOW_UI_URL"):
        env["MLOPS_MLFLOW_UI_URL"] = f"http://127.0.0.1:{found.mlflow_port}"
    return env


def workers(found: Settings, base_env: Mapping[str, str]) -> list[Service]:
    """One process worker per pool of deployments/pools.yaml."""
    from deployments.pools import load_pools

    env = worker_env(found, base_env)
    return [Service(name=f"worker-{pool}", url=f"pool {pool}", health=None, env=env,
                    command=(str(BIN / "prefect"), "worker", "start", "--pool", pool,
                             "--type", "process", "--name", f"worker-{pool}"))
            for pool in load_pools()]


def apply_laptop_pools(found: Settings) -> list[tuple[str, str]]:
    """The pools as process pools with their laptop env, on the stack's server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.pools import apply_pools, load_pools

    with temporary_settings(updates={PREFECT_API_URL: api_url(found)}):
        return asyncio.run(apply_pools(load_pools(), "process", laptop=True))


def apply_laptop_limits(found: Settings) -> list[str]:
    """The `gpu` limit and the zombie-run automation on the stack's server, one line each."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.automations import apply_limits
    from deployments.pools import load_limits, load_pools

    with temporary_settings(updates={PREFECT_API_URL: api_url(found)}):
        return asyncio.run(apply_limits(load_pools(), load_limits()))


async def _purge() -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from deployments.pools import load_pools
    from tasks.core.gpu import GPU_LIMIT

    said = []
    async with get_client() as client:
        deployments = await client.read_deployments()
        for deployment in deployments:
            await client.delete_deployment(deployment.id)
        automations = await client.read_automations()
        for automation in automations:
            await client.delete_automation(automation.id)
        said.append(f"removed {len(deployments)} deployments and {len(automations)} "
                    "automations")
        try:
            await client.delete_global_concurrency_limit_by_name(GPU_LIMIT)
            said.append("removed global concurrency limit gpu")
        except ObjectNotFound:
            pass
        for pool in load_pools():
            try:
                await client.delete_work_pool(pool)
                said.append(f"removed work pool {pool}")
            except ObjectNotFound:
                pass
    return said


def purge(found: Settings, say: Callable[[str], None]) -> None:
    """Delete every deployment and automation on the stack's own server, and its pools (the
    workers must be stopped first: a process worker recreates a missing pool)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url(found)}):
        for line in asyncio.run(_purge()):
            say(line)
