"""GitLab's MLflow-compatible API as the tracking server: the whole pipeline through a proxy that
passes only what GitLab implements, with GitLab's rules, in front of a real MLflow server."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from mlflow.entities import Param
from mlflow.exceptions import MlflowException

from tasks.adapters.gitlab_mlflow import GitLabRegistry, UnsupportedByGitLab
from tasks.adapters.registries import open_registry
from tasks.core.settings import Settings
from tasks.training.synthetic import generate_claims
from tests.conftest import config_yaml
from tests.e2e.conftest import cli_env, mlops

pytestmark = pytest.mark.slow
DEPLOY = "deploy:\n  staging:\n    smoke: {max_latency_ms: 2000}\n"
LENIENT = ", max_regression: 1.0, slice_max_regression: 1.0"  # a retrain may not beat v1


def gitlab_env(proxy, tmp_path, **extra) -> dict[str, str]:
    return cli_env(MLFLOW_TRACKING_URI=proxy.url, MLFLOW_TRACKING_TOKEN=proxy.token,
                   MLOPS_HOME=str(tmp_path / "state"), MLOPS_CONFIG_DIR=str(tmp_path / "configs"),
                   CI_JOB_ID="4242", CI_PROJECT_URL="https://gitlab.example.com/claims/models",
                   **extra)


def run_ok(args: list[str], env: dict) -> str:
    result = mlops(args, env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_whole_pipeline_through_gitlab_mlflow_api(gitlab_mlflow, mlflow_server, tmp_path):
    proxy, start = gitlab_mlflow, len(gitlab_mlflow.calls)
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "glfraud.yaml").write_text(config_yaml(name="glfraud", rows=3000, extra=DEPLOY))
    env = gitlab_env(proxy, tmp_path)

    first = run_ok(["run", "glfraud", "--approve-as", "alice"], env)
    assert "glfraud@champion: v- -> v1.0.0" in first and "promoted by alice" in first
    again = run_ok(["run", "glfraud", "--approve-as", "alice"], env)
    assert "(reused)" in again and "already champion" in again
    (configs / "glfraud.yaml").write_text(config_yaml(name="glfraud", rows=3000, n_trials=3,
                                                      gate=LENIENT, extra=DEPLOY))
    second = run_ok(["run", "glfraud", "--approve-as", "alice"], env)
    assert "glfraud@champion: v1.0.0 -> v1.0.1" in second

    generate_claims(1500, seed=9).to_parquet(tmp_path / "batch.parquet")
    run_ok(["score", "glfraud", "--input", str(tmp_path / "batch.parquet"),
            "--output", str(tmp_path / "scored.parquet")], env)
    assert set(pd.read_parquet(tmp_path / "scored.parquet")["model_version"]) == {"1.0.1"}
    assert "NO-DRIFT" in run_ok(["monitor", "glfraud", "--input",
                                 str(tmp_path / "batch.parquet")], env)
    assert "v1.0.1 -> v1.0.0" in run_ok(["rollback", "glfraud", "--as", "bob"], env)
    history = run_ok(["history", "glfraud"], env)
    assert history.count("promoted") == 2 and "1.0.1 -> 1.0.0" in history

    calls = proxy.calls[start:]
    assert proxy.refused == [], proxy.refused  # nothing GitLab lacks was attempted
    assert proxy.dropped == [], proxy.dropped  # no param or tag logged twice in a batch
    assert not [c for c in calls if c[2] == 400], "a param or tag was written twice, or too long"
    assert not [c for c in calls if c[2] in (401, 403)]

    # what GitLab holds, read from the real server behind it
    upstream = mlflow.MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    versions = upstream.search_model_versions("name='glfraud'")
    assert sorted(v.tags["gitlab.version"] for v in versions) == ["1.0.0", "1.0.1"]
    for version in versions:  # each version's own run holds the packed model, flat
        files = {f.path: f.is_dir for f in upstream.list_artifacts(version.run_id)}
        assert files == {"model.tar.gz": False, "model_card.md": False}
    experiment = upstream.get_experiment_by_name("glfraud").experiment_id
    runs = upstream.search_runs([experiment])
    trained = [r for r in runs if "mlops.registered_version" in r.data.tags]
    assert sorted(r.data.tags["mlops.registered_version"] for r in trained) == ["1.0.0", "1.0.1"]
    for run in runs:
        assert run.data.tags["gitlab.CI_JOB_ID"] == "4242"
        assert all(not f.is_dir for f in upstream.list_artifacts(run.info.run_id))
        assert all(len(v) <= 250 for v in run.data.params.values())
        assert proxy.token not in str(run.data.params) + str(run.data.tags)
    pointers = upstream.get_experiment_by_name("aliases/glfraud").experiment_id
    moves = [r.data.params for r in upstream.search_runs([pointers])]
    assert {(m["alias"], m["version"]) for m in moves} >= {
        ("challenger", "1.0.0"), ("staging", "1.0.1"), ("champion", "1.0.1"), ("champion", "1.0.0")}


def test_a_call_gitlab_does_not_implement_fails_naming_it(gitlab_mlflow, tmp_path, monkeypatch):
    proxy = gitlab_mlflow
    for key, value in gitlab_env(proxy, tmp_path).items():
        if key.startswith(("MLFLOW_", "MLOPS_", "CI_")):
            monkeypatch.setenv(key, value)
    registry = open_registry(Settings.from_env())
    assert isinstance(registry, GitLabRegistry)
    with pytest.raises(UnsupportedByGitLab) as caught:
        registry.client.search_model_versions("name = 'glfraud'")
    message = str(caught.value)
    assert message.startswith("GitLab's MLflow API does not support search_model_versions")
    assert len(message.splitlines()) == 1 and proxy.token not in message
    registry.client.create_registered_model("gl-unsupported")
    with pytest.raises(UnsupportedByGitLab, match="set_registered_model_alias"):
        registry.client.set_registered_model_alias("gl-unsupported", "champion", 1)
    with pytest.raises(UnsupportedByGitLab, match=r"log_artifact \(.*/files/folder/a.txt answered"):
        run = registry.start_run("gl-unsupported", "r", {})
        (tmp_path / "a.txt").write_text("a")
        registry.client.log_artifact(run, str(tmp_path / "a.txt"), "folder")
    assert ("GET", f"{proxy.project}/ml/mlflow/api/2.0/mlflow/model-versions/search") in \
        proxy.refused


def test_the_proxy_applies_gitlab_rules(gitlab_mlflow, tmp_path):
    """The proof above is only as good as the proxy: it must refuse what GitLab refuses."""
    proxy = gitlab_mlflow
    client = mlflow.MlflowClient(tracking_uri=proxy.url, registry_uri=proxy.url)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_TOKEN", proxy.token)
        experiment = client.create_experiment("gl-rules")
        run = client.create_run(experiment).info.run_id
        client.log_param(run, "p", "1")
        with pytest.raises(MlflowException, match="400"):
            client.log_param(run, "p", "1")  # once per key
        client.log_batch(run, params=[Param("p", "1"), Param("q", "2")])  # dropped silently
        assert (run, "p") in proxy.dropped and client.get_run(run).data.params == {
            "p": "1", "q": "2"}
        with pytest.raises(MlflowException, match="too long"):
            client.log_param(run, "long", "x" * 251)
        client.set_tag(run, "t", "1")
        with pytest.raises(MlflowException, match="400"):
            client.set_tag(run, "t", "2")
        source = tmp_path / "a.txt"
        source.write_text("a")
        client.log_artifact(run, str(source))
        with pytest.raises(Exception, match="404"):
            client.log_artifact(run, str(source), "folder")  # no folders
        other = client.create_run(experiment).info.run_id
        found = client.search_runs([experiment], filter_string=f"attributes.run_id = '{run}'")
        assert {r.info.run_id for r in found} == {run, other}  # the filter is ignored
        client.create_registered_model("gl-rules")
        version = client.create_model_version("gl-rules", source="", run_id=run,
                                              tags={"gitlab.version": "2.1.0"})
        assert version.aliases == ["2.1.0"] and version.version != "2.1.0"  # version = an id
        assert client.get_model_version("gl-rules", "2.1.0").run_id != run  # its own run
        with pytest.raises(MlflowException, match="already been taken"):
            client.create_model_version("gl-rules", source="", tags={"gitlab.version": "2.1.0"})
    with pytest.raises(MlflowException, match="401"):
        client.get_experiment(experiment)  # no token
