"""`mlops server start | status | stop`: the persistent local stack on free ports in a temp
MLOPS_HOME, used by a real command, idempotent, and gone after stop."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import config_yaml
from tests.e2e.conftest import cli_env, free_port, mlops

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and bool(Path(f"/proc/{pid}/cmdline").read_bytes())


def _flow_runs(api: str) -> list[dict]:
    req = urllib.request.Request(f"{api}/flow_runs/filter", data=b"{}",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_the_local_stack_starts_serves_commands_and_stops(tmp_path):
    home = tmp_path / "home"
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "tiny.yaml").write_text(config_yaml(name="tiny"))
    prefect_port, mlflow_port = free_port(), free_port()
    env = cli_env(MLOPS_HOME=str(home), MLOPS_CONFIG_DIR=str(configs), MLOPS_DEVICE="cpu",
                  MLOPS_PREFECT_PORT=str(prefect_port), MLOPS_MLFLOW_PORT=str(mlflow_port),
                  PREFECT_HOME=str(tmp_path / "prefect-home"))  # never the real ~/.prefect
    down = mlops(["server", "status"], env)
    assert down.returncode == 1 and "down" in down.stdout

    started = mlops(["server", "start"], env)
    try:
        assert started.returncode == 0, started.stderr
        assert f"Prefect UI: http://127.0.0.1:{prefect_port}" in started.stdout
        # the laptop gets the same gpu limit and zombie-run automation as `mlops pools apply`
        assert "global concurrency limit gpu (1 slots, one per GPU runner): created" in started.stdout
        assert "automation 'crash zombie flow runs'" in started.stdout
        pids = {name: int((home / "stack" / f"{name}.pid").read_text())
                for name in ("prefect", "mlflow", "worker-cpu-runners", "worker-gpu-runners")}
        up = mlops(["server", "status"], env)
        assert up.returncode == 0, up.stdout
        assert up.stdout.count("healthy") == 2
        api = f"http://127.0.0.1:{prefect_port}/api"
        with urllib.request.urlopen(f"http://127.0.0.1:{prefect_port}/ui-settings") as resp:
            assert json.loads(resp.read())["api_url"] == api  # the browser talks to this server
        with urllib.request.urlopen(f"http://127.0.0.1:{mlflow_port}/health") as resp:
            assert resp.status == 200

        trained = mlops(["train", "tiny"], env)
        assert trained.returncode == 0, trained.stderr
        assert "temporary Prefect server" not in trained.stdout
        assert any(r["parameters"].get("model") == "tiny" for r in _flow_runs(api))
        status = mlops(["status", "tiny", "--json"], env)
        assert status.returncode == 0, status.stderr
        shown = json.loads(status.stdout)
        assert shown["prefect"] == f"http://127.0.0.1:{prefect_port}"
        assert shown["mlflow"] == f"http://127.0.0.1:{mlflow_port}"
        (tiny,) = shown["models"]
        assert tiny["pending"] == []  # known, since the server answers
        assert tiny["aliases"][0]["alias"] == "champion"
        training = next(r for r in tiny["last"] if r["kind"] == "training")
        assert training["link"].startswith(f"http://127.0.0.1:{mlflow_port}/#/experiments/")

        again = mlops(["server", "start"], env)
        assert again.returncode == 0, again.stderr
        assert again.stdout.count("already running") == 4  # two servers, two workers
        # 2 pools, the gpu limit, the two automations (crash zombies, re-run a crashed run once)
        assert again.stdout.count("unchanged") == 5, again.stdout
        assert {name: int((home / "stack" / f"{name}.pid").read_text())
                for name in pids} == pids
    finally:
        stopped = mlops(["server", "stop"], env)
    assert stopped.returncode == 0, stopped.stderr
    assert not any(_alive(pid) for pid in pids.values())
    after = mlops(["server", "status"], env)
    assert after.returncode == 1
    # with the stack down a command falls back to a temporary server
    fallback = mlops(["schedules"], env)
    assert "no PREFECT_API_URL" in fallback.stdout
