"""Issue 22 item 3 on real servers: a flow run on a process worker whose worker and flow process
are killed with SIGKILL (as when a GitLab job's runner disappears) sends no more heartbeats, and
the automation `mlops pools apply` creates marks it Crashed within the configured time; the
second automation schedules the crashed run again, and a new worker runs it to Completed. A run
that crashes on its re-run too is left Crashed (re-run once, no retry storm)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from deployments.automations import RERUN_AUTOMATION, ZOMBIE_AUTOMATION, apply_limits
from deployments.pools import HEARTBEAT_ENV, LimitsSpec, apply_pool, load_pools
from tests.e2e.conftest import BIN, REPO, background, cli_env

pytestmark = pytest.mark.slow
POOL = "zombie-probe"
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
LIMITS = LimitsSpec(heartbeat_seconds=30, zombie_after_seconds=40,  # Prefect's minimum beat: 30 s
                    crashed_reruns=1, rerun_after_seconds=10)


def _state(api: str, run_id: str) -> dict:
    with urllib.request.urlopen(f"{api}/flow_runs/{run_id}", timeout=10) as resp:
        return json.loads(resp.read())["state"]


def _run(api: str, run_id: str) -> dict:
    with urllib.request.urlopen(f"{api}/flow_runs/{run_id}", timeout=10) as resp:
        return json.loads(resp.read())


def _history(api: str, run_id: str) -> list[dict]:
    """Every state the run went through, oldest first (a Crashed one may last a second only)."""
    url = f"{api}/flow_run_states/?flow_run_id={run_id}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return sorted(json.loads(resp.read()), key=lambda s: s["timestamp"])


def _names(api: str, run_id: str) -> list[str]:
    return [s["name"] for s in _history(api, run_id)]


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


async def _start(api: str, deployment: str, pid_file: Path, **parameters) -> str:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api}):
        async with get_client() as client:
            run = await client.create_flow_run_from_deployment(
                deployment, parameters={"pid_file": str(pid_file), **parameters})
    return str(run.id)


async def _remove_automation(api: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api}):
        async with get_client() as client:
            for name in (ZOMBIE_AUTOMATION, RERUN_AUTOMATION):
                for automation in await client.read_automations_by_name(name):
                    await client.delete_automation(automation.id)


@pytest.mark.timeout(360)
def test_a_killed_flow_run_is_crashed_by_the_zombie_automation_and_re_run_once(prefect_server,
                                                                                 tmp_path):
    api = prefect_server
    try:
        lines, deployment = asyncio.run(_setup(api))
        assert any("automation 'crash zombie flow runs'" in line for line in lines), lines
        assert any("automation 're-run crashed flow runs'" in line for line in lines), lines
        again, _ = asyncio.run(_setup(api))  # idempotent by name, on a real server
        assert [line.rsplit(": ", 1)[1] for line in again] == ["unchanged"] * 3, again
        pid_file = tmp_path / "flow.pid"
        env = cli_env(PREFECT_API_URL=api, PREFECT_WORKER_QUERY_SECONDS="2",
                      PREFECT_HOME=str(tmp_path / "prefect-home"))
        cmd = [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--name", "zombie-w"]
        with background(cmd, tmp_path / "worker.log", env=env) as worker:
            run_id = asyncio.run(_start(api, deployment, pid_file, busy_runs=1))
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
        # another runner comes up; it only takes scheduled runs. Beside the zombie, a run that
        # SIGKILLs itself on its first two runs: the live worker reports each crash at once
        cmd = [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--name", "zombie-w2"]
        with background(cmd, tmp_path / "worker2.log", env=env):
            twice = asyncio.run(_start(api, deployment, tmp_path / "twice.pid", killed_runs=2))
            time.sleep(10)
            assert _state(api, run_id)["type"] == "RUNNING"  # nobody else notices
            crashed = _wait("the run marked Crashed", lambda: next(
                (s for s in _history(api, run_id) if s["type"] == "CRASHED"), None),
                LIMITS.zombie_after_seconds + 45, every_s=1)
            took = time.monotonic() - killed
            done = _wait("the re-run ended", lambda: (r := _run(api, run_id))["run_count"] >= 2
                         and r["state"]["type"] in FINAL and r["state"], 90)
            rerun_took = time.monotonic() - killed - took
            second = _wait("the other run's second crash", lambda: _run(api, twice)["run_count"]
                           >= 2 and (s := _state(api, twice))["type"] == "CRASHED" and s, 120)
            # past the quiet period (and the server's few seconds to act) since that crash
            since = (datetime.now(UTC) - datetime.fromisoformat(second["timestamp"])).total_seconds()
            time.sleep(max(0.0, LIMITS.rerun_after_seconds + 10 - since))
            twice_run = _run(api, twice)
        assert "no heartbeat for 40 s" in crashed["message"], crashed
        assert done["type"] == "COMPLETED", (done, _names(api, run_id))
        names = _names(api, run_id)
        after = names[names.index("Crashed") + 1:]  # the same run went round once more
        assert after[0] == "AwaitingRetry" and after[-1] == "Completed", names
        assert names.count("Crashed") == 1 and names.count("AwaitingRetry") == 1, names
        assert _run(api, run_id)["run_count"] == 2
        # crashed on its re-run too: left Crashed, scheduled again only once
        assert twice_run["state"]["type"] == "CRASHED" and twice_run["run_count"] == 2, twice_run
        assert _names(api, twice).count("AwaitingRetry") == 1, _names(api, twice)
        print(f"crashed {took:.0f} s after kill -9 (zombie_after_seconds "
              f"{LIMITS.zombie_after_seconds}), re-run Completed {rerun_took:.0f} s later "
              f"(load {os.getloadavg()[0]:.1f}): {' -> '.join(names)}")
    finally:
        with contextlib.suppress(Exception):  # the shared server's other runs keep no such rule
            asyncio.run(_remove_automation(api))


CLI_PROBE = """
import sys, threading, time
from prefect import flow
from prefect.settings import get_current_settings
from tasks.core.heartbeats import beating, cli_heartbeats

@flow(name="cli-heartbeat-probe")
@beating
def probe(seconds: float) -> str:
    assert get_current_settings().flows.heartbeat_frequency is None  # Prefect's thread is off
    time.sleep(seconds)
    return "slept"

with cli_heartbeats(float(sys.argv[1])):
    state = probe(float(sys.argv[2]), return_state=True)
alive = [t.name for t in threading.enumerate() if t.name == "flow-run-heartbeat"]
print("run", state.state_details.flow_run_id, state.name, "beating after:", alive, flush=True)
"""


@pytest.mark.timeout(120)
def test_a_flow_run_the_cli_runs_beats_at_the_jobs_interval_and_stops_with_its_body(
        prefect_server, tmp_path):
    """A flow run started by `mlops train` (in the CLI's process) beat at Prefect's default,
    every 180 s, while the zombie automation marks a run Crashed after 120 s of silence: a live
    CLI run showed Crashed after two minutes (seen: Pending, Running, Crashed, Completed). Now
    it beats at pools.yaml's interval (1 s here) from its body, and the beat stops with it."""
    import subprocess
    import sys

    from prefect.settings import get_current_settings

    from deployments.pools import load_limits
    from mlops.app import flow_heartbeats
    from tasks.core.heartbeats import EVERY_S

    with flow_heartbeats():  # what the CLI wraps its flow runs in
        assert EVERY_S.get() == load_limits().heartbeat_seconds
        assert get_current_settings().flows.heartbeat_frequency is None
    assert load_limits().heartbeat_seconds < load_limits().zombie_after_seconds

    done = subprocess.run([sys.executable, "-c", CLI_PROBE, "1", "3.5"], cwd=REPO, timeout=90,
                          env=cli_env(PREFECT_API_URL=prefect_server), capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("run "))
    run_id, state = line.split()[1:3]
    assert state == "Completed" and line.endswith("beating after: []"), line
    # at 0, 1, 2 and 3 s: four (Prefect's own thread would have sent one, at 0 s)
    assert _wait("4 heartbeats", lambda: _heartbeats(prefect_server, run_id) >= 4, 30)
    assert "Crashed" not in _names(prefect_server, run_id)
