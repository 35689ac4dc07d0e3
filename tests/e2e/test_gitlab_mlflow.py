"""GitLab's MLflow-compatible API as the tracking server: the whole pipeline, as `mlops` processes,
against a fake that answers as gitlabhq's source says GitLab does, in the older and the newer
behaviour of `model-versions/create` (the fake's own rules: tests/unit/test_gitlab_mlflow_fake.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.training.synthetic import generate_claims
from tests.conftest import config_yaml
from tests.e2e.conftest import cli_env, mlops

pytestmark = pytest.mark.slow
DEPLOY = "deploy:\n  staging:\n    smoke: {max_latency_ms: 2000}\n"
LENIENT = ", max_regression: 1.0, slice_max_regression: 1.0"  # a retrain may not beat v1


def gitlab_env(fake, tmp_path, **extra) -> dict[str, str]:
    """A CI job of the same GitLab: its job id is one GitLab knows."""
    fake.ml.jobs.add("4242")
    return cli_env(MLFLOW_TRACKING_URI=fake.url, MLFLOW_TRACKING_TOKEN=fake.token,
                   PREFECT_API_URL=extra.pop("api"),  # one server for every command
                   MLOPS_HOME=str(tmp_path / "state"), MLOPS_CONFIG_DIR=str(tmp_path / "configs"),
                   CI_JOB_ID="4242", CI_SERVER_URL=fake.base,
                   CI_PROJECT_URL="https://gitlab.example.com/claims/models", **extra)


def run_ok(args: list[str], env: dict) -> str:
    result = mlops(args, env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_whole_pipeline_through_gitlab_mlflow_api(gitlab_mlflow, prefect_server, tmp_path):
    fake = gitlab_mlflow
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "glfraud.yaml").write_text(config_yaml(name="glfraud", rows=3000, extra=DEPLOY))
    env = gitlab_env(fake, tmp_path, api=prefect_server)

    first = run_ok(["run", "glfraud", "--approve-as", "alice"], env)  # a model GitLab lacks
    assert "glfraud@champion: v- → v1.0.0" in first and "promoted by alice" in first
    again = run_ok(["run", "glfraud", "--approve-as", "alice"], env)
    assert "(reused)" in again and "already champion" in again
    (configs / "glfraud.yaml").write_text(config_yaml(name="glfraud", rows=3000, n_trials=3,
                                                      gate=LENIENT, extra=DEPLOY))
    second = run_ok(["run", "glfraud", "--approve-as", "alice"], env)
    assert "glfraud@champion: v1.0.0 → v1.0.1" in second

    generate_claims(1500, seed=9).to_parquet(tmp_path / "batch.parquet")
    run_ok(["score", "glfraud", "--input", str(tmp_path / "batch.parquet"),
            "--output", str(tmp_path / "scored.parquet")], env)
    assert set(pd.read_parquet(tmp_path / "scored.parquet")["model_version"]) == {"1.0.1"}
    assert "NO-DRIFT" in run_ok(["monitor", "glfraud", "--input",
                                 str(tmp_path / "batch.parquet")], env)
    assert "v1.0.1 -> v1.0.0" in run_ok(["rollback", "glfraud", "--as", "bob"], env)
    history = run_ok(["history", "glfraud"], env)
    assert history.count("promoted") == 2 and "1.0.1 -> 1.0.0" in history

    assert fake.refused == [], fake.refused  # nothing GitLab lacks was attempted
    assert fake.dropped == [], fake.dropped  # no param or tag logged twice in a batch
    failed = [c for c in fake.calls if c[2] >= 400 and not (
        c[2] == 404 and c[1].endswith(("/experiments/get-by-name", "/registered-models/get")))]
    assert failed == [], failed  # 404s only where the adapter asks whether something exists
    assert not [c for c in fake.calls if "registered-models/search" in c[1]]

    # what GitLab holds
    assert [v.version for v in fake.ml.versions] == ["1.0.0", "1.0.1"]
    training = [c for c in fake.runs_of("[model]glfraud") if "run_key" in c.metadata]
    assert sorted(c.metadata.get("mlops.registered_version", "-") for c in training) == [
        "1.0.0", "1.0.1"]
    for mv in fake.ml.versions:  # the version's page: its run, metrics and files
        version_run = fake.ml.version_candidate(mv)
        files = fake.version_files("glfraud", mv.version)
        assert {"model.tar.gz", "model_card.md"} <= files
        assert any(m["key"] == "test_roc_auc" for m in version_run.metrics)
        trained = next(c for c in training if c.eid == mv.metadata["mlops.training_run_id"])
        if fake.mode == "newer":  # the training run itself, promoted
            assert version_run is trained and "plots-roc.png" in files
        else:  # a run GitLab made, with the training's params and metrics copied at creation;
            # the manifest digest is anchored on the training run after the version exists
            copied = {k: v for k, v in trained.params.items() if k != "manifest_sha256"}
            assert version_run is not trained and version_run.params == copied
            assert len(trained.params["manifest_sha256"]) == 64
    for run in training + fake.runs_of("audit/glfraud"):
        assert run.ci_build == "4242"  # each run links to the CI job
        assert all(len(v) <= 250 for v in run.params.values())
        assert fake.token not in str(run.params) + str(run.metadata)
        assert all("/" not in name for name in (run.package.files if run.package else {}))
    # GitLab has no aliases: the audit chain is the pointer log
    moves = {(r.params["alias"], r.params["to_version"]) for r in fake.runs_of("audit/glfraud")
             if "alias" in r.params and r.params["action"] in ("challenger", "staged", "promoted",
                                                             "rolled-back")}
    assert moves >= {("challenger", "1.0.0"), ("staging", "1.0.1"), ("champion", "1.0.1"),
                     ("champion", "1.0.0")}
    assert fake.runs_of("aliases/glfraud") == []
    verify = mlops(["audit", "verify", "glfraud"], env)
    assert verify.returncode == 0, verify.stderr
