"""Issue 22 item 2 on a real server with a process worker: the limits prefect.yaml gives
retrain-<model> (1, CANCEL_NEW) and deploy-<model> (1, ENQUEUE), applied to a deployment of a
long-running flow: a second retrain is cancelled, a second promotion waits in line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import urllib.request
from pathlib import Path

import pytest

from deployments.manifest import load_manifest
from deployments.pools import apply_pool, load_pools
from tests.e2e.conftest import BIN, REPO, background, cli_env
from tests.e2e.test_zombie_runs import _wait

pytestmark = pytest.mark.slow
POOL = "limits-probe"


def _state(api: str, run_id: str) -> dict:
    with urllib.request.urlopen(f"{api}/flow_runs/{run_id}", timeout=10) as resp:
        return json.loads(resp.read())["state"]


async def _deploy_and_start(api: str, name: str, limit: int, strategy: str,
                            pid_files: list[Path]) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy, ConcurrencyOptions
    from prefect.settings import PREFECT_API_URL, temporary_settings

    spec = load_pools()["cpu-runners"].model_copy(update={"name": POOL})
    with temporary_settings(updates={PREFECT_API_URL: api}):
        async with get_client() as client:
            await apply_pool(client, spec, "process")
            flow_id = await client.create_flow_from_name("zombie-probe")
            deployment = await client.create_deployment(
                flow_id=flow_id, name=name, work_pool_name=POOL,
                entrypoint="tests/e2e/zombie_flow.py:zombie_probe",
                concurrency_limit=limit, concurrency_options=ConcurrencyOptions(
                    collision_strategy=ConcurrencyLimitStrategy(strategy)),
                pull_steps=[{"prefect.deployments.steps.set_working_directory": {
                    "directory": str(REPO)}}])
            runs = [await client.create_flow_run_from_deployment(
                deployment, parameters={"pid_file": str(p), "seconds": 120}) for p in pid_files]
    return [str(r.id) for r in runs]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("deployment, second", [
    ("training-pipeline/retrain-fraud", "CANCELLED"),
    ("deploy/deploy-fraud", "SCHEDULED"),  # AwaitingConcurrencySlot: in line, not dropped
])
def test_a_second_run_is_cancelled_or_queued_as_prefect_yaml_says(prefect_server, tmp_path,
                                                                    deployment, second):
    limit, strategy = {d.full_name: d for d in load_manifest(REPO / "prefect.yaml")}[
        deployment].concurrency
    pids = [tmp_path / "first.pid", tmp_path / "second.pid"]
    env = cli_env(PREFECT_API_URL=prefect_server, PREFECT_WORKER_QUERY_SECONDS="2",
                  PREFECT_HOME=str(tmp_path / "prefect-home"))
    cmd = [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--name", "limits-w"]
    ids = asyncio.run(_deploy_and_start(
        prefect_server, deployment.replace("/", "-"), limit, strategy, pids))
    with background(cmd, tmp_path / "worker.log", env=env):
        # the worker may take either run first: the one whose process starts is "first"
        started = _wait("a run's process", lambda: next((i for i, p in enumerate(pids)
                                                         if p.is_file() and p.read_text()), None)
                        is not None and [p for p in pids if p.is_file()], 120)
        first = pids.index(started[0])
        pid = int(started[0].read_text())
        first_id, second_id = ids[first], ids[1 - first]
        try:
            state = _wait(f"the other run {second}", lambda: (s := _state(
                prefect_server, second_id))["type"] == second and s.get("name") != "Scheduled"
                and s, 60)
            assert _state(prefect_server, first_id)["type"] == "RUNNING"
            assert not pids[1 - first].exists()  # the other never ran beside it
            if second == "SCHEDULED":
                assert state["name"] == "AwaitingConcurrencySlot", state
        finally:
            os.kill(pid, signal.SIGKILL)
