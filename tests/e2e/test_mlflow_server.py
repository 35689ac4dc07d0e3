"""`mlops train` as a real process against a real MLflow server backed by PostgreSQL."""

from __future__ import annotations

import subprocess

import mlflow
import pytest

from tests.conftest import config_yaml
from tests.e2e.conftest import BIN, cli_env

pytestmark = pytest.mark.slow


def run_mlops(args: list[str], env: dict[str, str], timeout: int = 600):
    return subprocess.run([str(BIN / "mlops"), *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_train_against_mlflow_server_on_postgres(mlflow_server, prefect_server, tmp_path):
    """The first run on a laptop's path (no PREFECT_API_URL: a temporary Prefect server, quiet
    on stderr); the re-runs on this worker's Prefect server."""
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "srv.yaml").write_text(config_yaml(name="srv", rows=2000))
    env = cli_env(MLFLOW_TRACKING_URI=mlflow_server, MLOPS_HOME=str(tmp_path / "state"),
                  MLOPS_CONFIG_DIR=str(configs), MLOPS_DEVICE="cpu")

    first = run_mlops(["train", "srv"], env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    assert "started a temporary Prefect server at http://127.0.0.1:" in first.stdout
    assert "trial 2/2" in first.stdout  # progress per trial
    assert first.stderr.strip() == "", first.stderr

    client = mlflow.MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    mv = client.get_model_version_by_alias("srv", "challenger")
    assert str(mv.version) == "1" and mv.tags["artifact_sha256"]
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_registry_uri(mlflow_server)
    model = mlflow.pyfunc.load_model("models:/srv@challenger")
    assert len(model.predict(model.input_example)) == len(model.input_example)

    env["PREFECT_API_URL"] = prefect_server
    again = run_mlops(["train", "srv"], env)
    assert again.returncode == 0 and "srv: up to date (v1" in again.stdout
    # through the flow: it finds the version over MLflow's REST API and imports no MLflow
    forced = subprocess.run([str(BIN / "python"), "-X", "importtime", "-c",
                             "from mlops.cli import main; main()", "train", "srv", "--force"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert forced.returncode == 0 and "(reused)" in forced.stdout, forced.stdout[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in forced.stderr.splitlines()
                if line.startswith("import time:")}
    assert "flows.training" in imported and "mlflow" not in imported
    assert len(client.search_model_versions("name = 'srv'")) == 1


def test_bad_data_in_a_real_process_prints_one_line(prefect_server, tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    data = tmp_path / "claims.csv"
    data.write_text("claim_id,region,is_fraud\nC1,north,0\n")
    (configs / "bad.yaml").write_text(
        config_yaml(name="bad", data=f"data: {{source: file, path: '{data}'}}"))
    env = cli_env(MLOPS_HOME=str(tmp_path / "state"), MLOPS_CONFIG_DIR=str(configs),
                  PREFECT_API_URL=prefect_server)  # the temporary server is the test above's
    result = run_mlops(["train", "bad"], env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: validation failed: column 'damage_severity' named in exclude is "
                     "not in the data (and 3 more)"], result.stderr
