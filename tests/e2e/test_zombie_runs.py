"""Issue 22 item 3 on real servers: a flow run on a process worker whose worker and flow process
are killed with SIGKILL (as when a GitLab job's runner disappears) sends no more heartbeats, and
the automation `mlops pools apply` creates marks it Crashed within the configured time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from deployments.automations import ZOMBIE_AUTOMATION, apply_limits
from deployments.pools import HEARTBEAT_ENV, LimitsSpec, apply_pool, load_pools
from tests.e2e.conftest import BIN, REPO, background, cli_env

pytestmark = pytest.mark.slow
POOL = "zombie-probe"
LIMITS = LimitsSpec(heartbeat_seconds=30, zombie_after_seconds=40)  # Prefect's minimum beat: 30 s


def _state(api: str, run_id: str) -> dict:
    with urllib.request.urlopen(f"{api}/flow_runs/{run_id}", timeout=10) as resp:
        return json.loads(resp.read())["state"]


def _heartbeats(api: str, run_id: str) -> int:
    body = {"filter": {"event": {"name": ["prefect.flow-run.heartbeat"]},
                       "resource": {"id": [f"prefect.flow-run.{run_id}"]}}, "limit": 10}
    req = urllib.request.Request(f"{api}/events/filter", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return len(json.loads(resp.read())["events"])


def _wait(what: str, check, timeout_s: float, every_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every_s)
    raise TimeoutError(f"{what} within {timeout_s:.0f} s")


async def _setup(api: str) -> tuple[list[str], str]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    spec = load_pools()["cpu-runners"].model_copy(update={"name": POOL})
    with temporary_settings(updates={PREFECT_API_URL: api}):
        lines = await apply_limits(load_pools(), LIMITS)
        async with get_client() as client:
            await apply_pool(client, spec, "process")
            flow_id = await client.create_flow_from_name("zombie-probe")
            deployment = await client.create_deployment(
                flow_id=flow_id, name="sleeper", work_pool_name=POOL,
                entrypoint="tests/e2e/zombie_flow.py:zombie_probe",
                pull_steps=[{"prefect.deployments.steps.set_working_directory": {
                    "directory": str(REPO)}}])
        return lines, str(deployment)


async def _start(api: str, deployment: str, pid_file: Path) -> str:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api}):
        async with get_client() as client:
            run = await client.create_flow_run_from_deployment(
                deployment, parameters={"pid_file": str(pid_file)})
    return str(run.id)


async def _remove_automation(api: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api}):
        async with get_client() as client:
            for automation in await client.read_automations_by_name(ZOMBIE_AUTOMATION):
                await client.delete_automation(automation.id)


@pytest.mark.timeout(300)
def test_a_killed_flow_run_is_crashed_by_the_zombie_automation(prefect_server, tmp_path):
    api = prefect_server
    try:
        lines, deployment = asyncio.run(_setup(api))
        assert any("automation 'crash zombie flow runs'" in line for line in lines), lines
        again, _ = asyncio.run(_setup(api))  # idempotent by name, on a real server
        assert [line.rsplit(": ", 1)[1] for line in again] == ["unchanged", "unchanged"], again
        pid_file = tmp_path / "flow.pid"
        env = cli_env(PREFECT_API_URL=api, PREFECT_WORKER_QUERY_SECONDS="2",
                      PREFECT_HOME=str(tmp_path / "prefect-home"))
        cmd = [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--name", "zombie-w"]
        with background(cmd, tmp_path / "worker.log", env=env) as worker:
            run_id = asyncio.run(_start(api, deployment, pid_file))
            pid = int(_wait("the flow process started", lambda: pid_file.is_file()
                            and pid_file.read_text(), 120))
            assert Path(f"/proc/{pid}/environ").read_bytes().count(
                f"{HEARTBEAT_ENV}=30".encode()) == 1  # from the pool's base job template
            _wait("a first heartbeat", lambda: _heartbeats(api, run_id), 30)
            assert _state(api, run_id)["type"] == "RUNNING"
            # the runner is gone: worker first (it would report the crash itself), then the run
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            time.sleep(10)
            assert _state(api, run_id)["type"] == "RUNNING"  # nobody else notices
            state = _wait("the run marked Crashed", lambda: (s := _state(api, run_id))["type"]
                          == "CRASHED" and s, LIMITS.zombie_after_seconds + 45, every_s=1)
            took = time.monotonic() - killed
        assert "no heartbeat for 40 s" in state["message"], state
        print(f"crashed {took:.0f} s after kill -9 (zombie_after_seconds "
              f"{LIMITS.zombie_after_seconds}, load {os.getloadavg()[0]:.1f})")
    finally:
        with contextlib.suppress(Exception):  # the shared server's other runs keep no such rule
            asyncio.run(_remove_automation(api))
