"""What a person finds on a training run in the Prefect UI when tracking is an MLflow server:
the evaluation plots as image artifacts the browser can load from the tracking server, and a
link to the model card in the MLflow UI."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.conftest import config_yaml
from tests.e2e.conftest import cli_env, mlops

pytestmark = pytest.mark.slow


def artifacts(api: str, flow_run_id: str) -> list[dict]:
    body = json.dumps({"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}).encode()
    req = urllib.request.Request(f"{api}/artifacts/filter", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def latest_training_run(api: str, model: str) -> str:
    body = json.dumps({"flows": {"name": {"any_": ["training-pipeline"]}},
                       "sort": "START_TIME_DESC"}).encode()
    req = urllib.request.Request(f"{api}/flow_runs/filter", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        runs = [r for r in json.loads(resp.read()) if r["parameters"].get("model") == model]
    return runs[0]["id"]


def test_plots_are_images_served_by_the_tracking_server(prefect_server, mlflow_server, tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "pics.yaml").write_text(config_yaml(name="pics"))
    env = cli_env(PREFECT_API_URL=prefect_server, MLFLOW_TRACKING_URI=mlflow_server,
                  MLOPS_HOME=str(tmp_path / "state"), MLOPS_CONFIG_DIR=str(configs),
                  MLOPS_DEVICE="cpu")
    done = mlops(["train", "pics"], env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    found = artifacts(prefect_server, latest_training_run(prefect_server, "pics"))
    images = {a["key"]: a["data"] for a in found if a["type"] == "image"}
    assert {"pics-roc", "pics-pr", "pics-confusion", "pics-importance"} <= set(images), found
    for key, url in images.items():
        assert url.startswith(f"{mlflow_server}/get-artifact?path=plots"), url
        with urllib.request.urlopen(url, timeout=10) as resp:  # what the browser's <img> loads
            assert resp.status == 200 and resp.headers["Content-Type"] == "image/png", key
            assert resp.read(8) == b"\x89PNG\r\n\x1a\n", key
    card = next(a for a in found if a["key"] == "pics-model-card")
    assert card["type"] == "markdown" and "model card" in card["data"]  # a link artifact
    assert f"{mlflow_server}/#/experiments/" in card["data"]
    assert card["data"].rstrip(")").endswith("/artifactPath/model/model_card.md")
    metrics = next(a for a in found if a["key"] == "pics-metrics")
    rows = json.loads(metrics["data"])
    assert all(len(r["candidate"].split(".")[1]) == 4 for r in rows), rows  # one precision
