"""The GitLab MLflow fake answers as gitlabhq's source says GitLab does (a proof through the fake
is only as good as the fake), and the adapter names what GitLab does not implement."""

from __future__ import annotations

import time

import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException, RestException

from tasks.adapters.gitlab_mlflow import GitLabRegistry, UnsupportedByGitLab
from tasks.adapters.registries import open_registry
from tasks.core.errors import ConfigError, RegistryError
from tasks.core.settings import Settings
from tests.fakes.gitlab_mlflow import MODES, serve


@pytest.fixture(params=MODES)
def gitlab(request, monkeypatch):
    yield from serve(request.param, monkeypatch)


def test_a_call_gitlab_does_not_implement_fails_naming_it(gitlab, tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    registry = open_registry(Settings.from_env())
    assert isinstance(registry, GitLabRegistry)
    with pytest.raises(UnsupportedByGitLab) as caught:
        registry.client.search_model_versions("name = 'fraud'")
    message = str(caught.value)
    assert message.startswith("GitLab's MLflow API does not support search_model_versions")
    assert len(message.splitlines()) == 1 and gitlab.token not in message
    registry.client.create_registered_model("fraud")
    with pytest.raises(UnsupportedByGitLab, match="set_registered_model_alias"):
        registry.client.set_registered_model_alias("fraud", "champion", 1)
    assert ("GET", f"{gitlab.project}/ml/mlflow/api/2.0/mlflow/model-versions/search") in \
        gitlab.refused
    run = registry.start_run("exp", "r", {})
    (tmp_path / "a.txt").write_text("a")
    if gitlab.mode == "older":  # no sub-folders in package files
        with pytest.raises(UnsupportedByGitLab, match=r"log_artifact \(.*/files/dir/a.txt ans"):
            registry.client.log_artifact(run, str(tmp_path / "a.txt"), "dir")
    else:  # ml_model_packages.rb `(*path/)`
        registry.client.log_artifact(run, str(tmp_path / "a.txt"), "dir")
        assert "dir/a.txt" in gitlab.ml.candidate(eid=run).package.files


def test_read_only_commands_read_gitlab_over_rest_with_its_rules(gitlab, tmp_path, monkeypatch):
    """`mlops history | audit verify | status` get the REST reader with GitLab's rules: no
    version search, no alias route; a token is required, a refused one is named without it."""
    from mlops.reads import read_registry
    from tasks.adapters.gitlab_mlflow import GitLabRestRegistry

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    registry = read_registry(Settings.from_env())
    assert isinstance(registry, GitLabRestRegistry)
    assert (registry.max_param_chars, registry.serves_artifact_files) == (250, False)
    assert registry.training_experiment("fraud") == "[model]fraud"
    assert registry.versions("fraud") == [] and registry.alias_version("fraud", "champion") is None
    assert gitlab.refused == [] and gitlab.ml.models == []  # a read creates nothing
    with pytest.raises(RegistryError, match="401") as refused:
        GitLabRestRegistry(gitlab.url, "glpat-refused").versions("fraud")
    assert "glpat-refused" not in str(refused.value)
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    with pytest.raises(ConfigError, match="set MLFLOW_TRACKING_TOKEN"):
        read_registry(Settings.from_env())


def test_runs_follow_gitlabs_rules(gitlab, tmp_path):
    client = MlflowClient(gitlab.url, gitlab.url)
    experiment = client.create_experiment("rules")
    assert experiment == "1"  # the project-scoped iid, as a string
    run = client.create_run(experiment).info.run_id
    client.log_param(run, "p", "1")
    with pytest.raises(MlflowException, match="Validation failed: Name has already been taken") \
            as twice:
        client.log_param(run, "p", "1")
    assert twice.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException, match=r"Value is too long \(maximum is 250 characters\)"):
        client.log_param(run, "long", "x" * 251)
    client.log_batch(run, params=[Param("p", "2"), Param("q", "2")])  # duplicates skipped
    assert (run, "p") in gitlab.dropped and client.get_run(run).data.params == {"p": "1", "q": "2"}
    with pytest.raises(RestException, match="CheckViolation"):  # metrics go in first
        client.log_batch(run, metrics=[Metric("m", 1.0, 1, 0)], params=[Param("z", "x" * 251)])
    assert client.get_run(run).data.metrics == {"m": 1.0}
    client.set_tag(run, "t", "1")
    with pytest.raises(RestException, match="Name 't' already taken"):
        client.set_tag(run, "t", "2")

    uri = client.get_run(run).info.artifact_uri
    assert uri.endswith(f"{gitlab.project}/packages/ml_models/candidate:1/files/")
    (tmp_path / "roc (1).png").write_bytes(b"png")
    with pytest.raises(requests.HTTPError, match="file_name is invalid"):
        client.log_artifact(run, str(tmp_path / "roc (1).png"))

    time.sleep(0.01)
    other = client.create_run(experiment).info.run_id
    found = client.search_runs([experiment], filter_string=f"attributes.run_id = '{run}'")
    assert [r.info.run_id for r in found] == [other, run]  # filter ignored, newest first
    anonymous = requests.get(f"{gitlab.url}/api/2.0/mlflow/runs/get", params={"run_id": run},
                             timeout=10)
    assert (anonymous.status_code, anonymous.json()) == (401, {"message": "401 Unauthorized"})


def test_versions_follow_gitlabs_rules(gitlab):
    client = MlflowClient(gitlab.url, gitlab.url)
    client.create_registered_model("fraud")
    version = client.create_model_version("fraud", source="", tags={"gitlab.version": "2.1.0"})
    assert version.aliases == ["2.1.0"] and version.version != "2.1.0"  # `version` = a db id
    assert version.tags["gitlab.version"] == "2.1.0"
    assert client.get_model_version("fraud", "2.1.0").run_id == version.run_id
    with pytest.raises(RestException) as by_id:
        client.get_model_version("fraud", version.version)
    assert by_id.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert client.create_model_version("fraud", source="").aliases == ["2.1.1"]  # next patch
    uri = requests.get(f"{gitlab.url}/api/2.0/mlflow/model-versions/get-download-uri",
                       params={"name": "any", "version": "999"}, timeout=10,
                       headers={"Authorization": f"Bearer {gitlab.token}"})
    assert uri.json() == {"artifact_uri": "mlflow-artifacts:/999"}  # no lookup at all
    with pytest.raises(RestException, match="RESOURCE_DOES_NOT_EXIST"):
        client.create_model_version("nosuch", source="")
    with pytest.raises(RestException, match="RESOURCE_ALREADY_EXISTS"):
        client.create_registered_model("fraud")


def test_a_promoted_run_files_into_the_versions_package(gitlab, tmp_path):
    """Newer GitLab renames the run's package to the version's; an upload to `candidate:<iid>`
    afterwards lands in a new package, not the version's (so the adapter asks for the run's
    address again)."""
    client = MlflowClient(gitlab.url, gitlab.url)
    client.create_registered_model("fraud")
    model_experiment = client.get_experiment_by_name("[model]fraud").experiment_id
    run = client.create_run(model_experiment).info.run_id
    (tmp_path / "plot.png").write_bytes(b"png")
    client.log_artifact(run, str(tmp_path / "plot.png"))
    before = client.get_run(run).info.artifact_uri
    version = client.create_model_version("fraud", source="", run_id=run)
    if gitlab.mode == "older":
        assert version.run_id != run and client.get_run(run).info.artifact_uri == before
        assert gitlab.version_files("fraud", "1.0.0") == set()
        return
    assert version.run_id == run
    assert client.get_run(run).info.artifact_uri.endswith(f"/ml_models/{version.version}/files/")
    assert gitlab.version_files("fraud", "1.0.0") == {"plot.png"}
    (tmp_path / "late.txt").write_text("late")
    client.log_artifact(run, str(tmp_path / "late.txt"))  # MLflow still holds the old address
    assert gitlab.version_files("fraud", "1.0.0") == {"plot.png"}
    with pytest.raises(RestException, match="Run has already a model version"):
        client.create_model_version("fraud", source="", run_id=run)


def test_a_model_whose_experiment_name_is_taken_cannot_be_created(gitlab):
    """create_model_service.rb makes `[model]<name>` first and fails when it exists."""
    client = MlflowClient(gitlab.url, gitlab.url)
    client.create_experiment("[model]fraud")
    with pytest.raises(RestException) as refused:
        client.create_registered_model("fraud")
    assert refused.value.json == {"error_code": "RESOURCE_ALREADY_EXISTS"}
    with pytest.raises(RegistryError, match=r"^GitLab refused to create model fraud: .*"
                                            r"experiment \[model\]fraud without a model"):
        GitLabRegistry(gitlab.url).training_experiment("fraud")
