"""A real Prefect server on PostgreSQL: the pipeline pauses for approval and `mlops approve`
answers it from another process."""

from __future__ import annotations

import time

import mlflow
import pytest

from tests.conftest import config_yaml
from tests.e2e.conftest import BIN, background, cli_env, mlops, paused_run

pytestmark = pytest.mark.slow
DEPLOY = """deploy:
  staging:
    smoke: {max_latency_ms: 2000}
  production:
    approvers: [alice]
"""


def setup_env(tmp_path, api: str, name: str) -> dict:
    configs = tmp_path / "configs"
    configs.mkdir(exist_ok=True)
    (configs / f"{name}.yaml").write_text(config_yaml(name=name, extra=DEPLOY))
    return cli_env(PREFECT_API_URL=api, MLOPS_HOME=str(tmp_path / "state"),
                   MLOPS_CONFIG_DIR=str(configs), MLOPS_DEVICE="cpu")


def champion(tmp_path, name: str) -> str | None:
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}")
    try:
        return str(client.get_model_version_by_alias(name, "champion").version)
    except mlflow.exceptions.MlflowException:
        return None


def test_pause_then_approve_from_another_process(prefect_server, tmp_path):
    env = setup_env(tmp_path, prefect_server, "appr")
    with background([str(BIN / "mlops"), "run", "appr"], tmp_path / "run.log", env=env) as run:
        run_id = paused_run(prefect_server, "appr")
        assert champion(tmp_path, "appr") is None

        refused = mlops(["approve", run_id, "--as", "mallory"], env)
        assert refused.returncode == 2 and "mallory may not approve" in refused.stderr

        started = time.perf_counter()
        answer = mlops(["approve", run_id, "--as", "alice", "--comment", "looks good"], env)
        assert answer.returncode == 0, answer.stderr
        while champion(tmp_path, "appr") is None and run.poll() is None:
            time.sleep(0.2)
        promoted_after = time.perf_counter() - started
        assert run.wait(timeout=120) == 0, (tmp_path / "run.log").read_text()[-3000:]
    print(f"\napproval -> champion alias moved: {promoted_after:.2f}s "
          f"(mlops approve process included)")
    assert champion(tmp_path, "appr") == "1"
    history = mlops(["history", "appr"], env)
    assert history.returncode == 0
    assert "promoted" in history.stdout and "alice" in history.stdout
    assert "looks good" in history.stdout


def test_pause_then_reject(prefect_server, tmp_path):
    env = setup_env(tmp_path, prefect_server, "rej")
    with background([str(BIN / "mlops"), "run", "rej"], tmp_path / "run.log", env=env) as run:
        run_id = paused_run(prefect_server, "rej")
        answer = mlops(["approve", run_id, "--as", "alice", "--reject", "--comment", "not yet"],
                       env)
        assert answer.returncode == 0, answer.stderr
        assert run.wait(timeout=120) == 1
    log = (tmp_path / "run.log").read_text()
    assert "rejected by alice: not yet" in log
    assert champion(tmp_path, "rej") is None
    history = mlops(["history", "rej"], env)
    assert "approval-rejected" in history.stdout and "not yet" in history.stdout
