"""A Parquet dataset of several files trained, registered, promoted and scored through the
streaming path, as `mlops` processes against a real MLflow server (PostgreSQL) and a real
Prefect server."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest

from tasks.training.synthetic import generate_claims
from tests.conftest import config_yaml
from tests.e2e.conftest import cli_env, mlops

pytestmark = pytest.mark.slow
DEPLOY = "deploy:\n  staging:\n    smoke: {max_latency_ms: 2000}\n"


def test_a_parquet_dataset_trains_registers_and_scores_by_streaming(mlflow_server,
                                                                    prefect_server, tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    dataset = tmp_path / "claims"
    env = cli_env(MLFLOW_TRACKING_URI=mlflow_server, PREFECT_API_URL=prefect_server,
                  MLOPS_HOME=str(tmp_path / "state"), MLOPS_CONFIG_DIR=str(configs),
                  MLOPS_DEVICE="cpu")
    made = mlops(["generate", "--rows", "6000", "--output", str(dataset), "--parts", "4"], env)
    assert made.returncode == 0, made.stderr
    assert len(list(dataset.glob("part-*.parquet"))) == 4
    (configs / "streamed.yaml").write_text(config_yaml(
        name="streamed", data=f"data: {{source: file, path: '{dataset}/', key: claim_id}}",
        extra=DEPLOY))

    run = mlops(["run", "streamed", "--approve-as", "alice"], env)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert "validation: 6,000 rows in 4 batches" in out  # the flow streamed, with progress
    assert "in-core matrices built" in out
    assert "streamed@champion: v- → v1" in out

    client = mlflow.MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    mv = client.get_model_version_by_alias("streamed", "champion")
    run_data = client.get_run(mv.run_id).data
    assert 0.75 < run_data.metrics["test_roc_auc"] <= 1.0
    assert not list((tmp_path / "state" / "xgb-cache").glob("*"))

    again = mlops(["train", "streamed"], env)  # the folder's fingerprint finds v1
    assert again.returncode == 0 and "streamed: up to date (v1" in again.stdout, again.stdout

    generate_claims(1500, seed=9).to_parquet(tmp_path / "batch.parquet")
    scored = mlops(["score", "streamed", "--input", str(tmp_path / "batch.parquet"),
                    "--output", str(tmp_path / "scored.parquet")], env)
    assert scored.returncode == 0, scored.stdout[-2000:] + scored.stderr[-2000:]
    frame = pd.read_parquet(tmp_path / "scored.parquet")
    assert len(frame) == 1500 and set(frame["model_version"]) == {"1"}
