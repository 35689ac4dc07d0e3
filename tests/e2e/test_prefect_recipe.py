"""The laptop recipe of docs/prefect.md, run line by line as written in a shell from the
checkout: `mlops server start` (servers, process pools, workers, the profile mlops-local), plain
`prefect` commands against it, `prefect deploy --all`, a deployment run on the laptop's worker
with its MLflow links, and `mlops server stop --purge` switching the profile back. PREFECT_HOME
and MLOPS_HOME are temporary: the developer's ~/.prefect is never touched."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
import urllib.request
from datetime import UTC, datetime

import pytest

from tests.e2e.conftest import REPO, cli_env, free_port, paused_run
from tests.e2e.test_deployments import write_configs

pytestmark = pytest.mark.slow
DOC = REPO / "docs" / "prefect.md"


def recipe() -> list[str]:
    """The commands of the bash block after the laptop-recipe marker, comments dropped."""
    text = DOC.read_text()
    block = re.search(r"<!-- laptop-recipe[^>]*-->\s*```bash\n(.*?)```", text, re.S)
    assert block, f"no laptop-recipe block in {DOC}"
    lines = [line.split("  #")[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def shell(lines: list[str], env: dict, timeout_s: float) -> subprocess.CompletedProcess:
    """One bash session (so `source` carries over), stopping at the first failing line."""
    script = "set -e\n" + "\n".join(f"echo '>>> {line}'\n{line}" for line in lines)
    return subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout_s)


def api_post(api: str, path: str, body: dict) -> list:
    req = urllib.request.Request(f"{api}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_the_laptop_recipe_runs_as_written(tmp_path):
    steps = recipe()
    assert steps[0].endswith("mlops server start") and "deploy --all" in " ".join(steps)
    assert steps[-1] == "mlops server stop --purge"
    prefect_home, home = tmp_path / "prefect-home", tmp_path / "home"
    prefect_port, mlflow_port = free_port(), free_port()
    env = cli_env(MLOPS_HOME=str(home), PREFECT_HOME=str(prefect_home),
                  MLOPS_CONFIG_DIR=str(write_configs(tmp_path / "configs")),
                  MLOPS_PREFECT_PORT=str(prefect_port), MLOPS_MLFLOW_PORT=str(mlflow_port),
                  PREFECT_WORKER_QUERY_SECONDS="2", COLUMNS="200")  # rich tables uncut
    api = f"http://127.0.0.1:{prefect_port}/api"
    try:
        ran = shell(steps[:-1], env, timeout_s=840)
        out = ran.stdout + ran.stderr
        assert ran.returncode == 0, out[-5000:]
        listed = out.split(">>> prefect profile ls")[1].split(">>>")[0]
        assert "mlops-local" in listed, listed
        pools = out.split(">>> prefect work-pool ls")[1].split(">>>")[0]
        assert "cpu-runners" in pools and "gpu-runners" in pools and "process" in pools, pools
        assert "Completed" in out.split(">>> prefect deployment run")[1]
        assert "temporary" not in out.lower(), "a plain prefect command started its own server"
        profiles = tomllib.loads((prefect_home / "profiles.toml").read_text())
        assert profiles["active"] == "mlops-local"
        assert profiles["profiles"]["mlops-local"]["PREFECT_API_URL"] == api

        # the run the worker executed: named after what it does, with the stack's MLflow links
        today = datetime.now(UTC).date().isoformat()
        [training] = api_post(api, "/flow_runs/filter", {"flow_runs": {
            "name": {"any_": [f"train-fraud-{today}"]}}})
        assert training["state_type"] == "COMPLETED"
        artifacts = api_post(api, "/artifacts/filter", {"artifacts": {
            "flow_run_id": {"any_": [training["id"]]}}})
        mlflow_ui = f"http://127.0.0.1:{mlflow_port}"
        assert any(mlflow_ui in json.dumps(a.get("data")) for a in artifacts), \
            [a.get("key") for a in artifacts]
        assert not any("mlflow ui " in json.dumps(a.get("data")) for a in artifacts)
        paused_run(api, "fraud")  # its deploy run waits for approval (no process left running)
    finally:
        stopped = shell(steps[-1:], {**env, "PATH": f"{REPO / '.venv' / 'bin'}:{env['PATH']}"},
                        timeout_s=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert re.search(r"removed 1[0-9] deployments and [1-9] automations", stopped.stdout), \
        stopped.stdout
    assert "Prefect profile ephemeral is active again" in stopped.stdout
    assert tomllib.loads((prefect_home / "profiles.toml").read_text())["active"] == "ephemeral"
