"""GitLab's MLflow API adapter: names, versions, the pointer log and call guarding."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException, RestException

from tasks.adapters.gitlab_mlflow import (
    GitLabRegistry,
    GuardedClient,
    UnsupportedByGitLab,
    flat_name,
    is_gitlab_mlflow,
    next_patch,
)
from tasks.adapters.registries import open_registry
from tasks.core.errors import ConfigError
from tasks.core.settings import Settings

GITLAB = "https://gitlab.example.com/api/v4/projects/42/ml/mlflow"


def test_gitlab_uris_are_recognised():
    assert is_gitlab_mlflow(GITLAB) and is_gitlab_mlflow(GITLAB + "/")
    assert is_gitlab_mlflow("https://gitlab.example.com/api/v4/projects/claims%2Fmodels/ml/mlflow")
    assert not is_gitlab_mlflow("http://127.0.0.1:5000")
    assert not is_gitlab_mlflow(GITLAB + "/api/2.0/mlflow")


def test_flat_names_and_next_versions():
    assert flat_name("plots", "roc.png") == "plots-roc.png"
    assert flat_name("validation/x/", "report.md") == "validation-x-report.md"
    assert flat_name(None, "gate/decision.json") == "gate-decision.json"
    assert flat_name(None, "model.tar.gz") == "model.tar.gz"
    assert next_patch(None) == "1.0.0"
    assert next_patch("1.0.9") == "1.0.10"
    assert next_patch("2.3.1-rc.1") == "2.3.2"


class FakeClient:
    def unknown(self):
        raise RestException({"error": "404 Not Found"})

    def old_style(self):
        raise MlflowException("API request to endpoint /api/2.0/mlflow/registered-models/alias "
                              "failed with error code 404 != 200. Response body: ''")

    def missing(self):
        raise RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such run"})

    def fine(self, value):
        return value


def test_only_unknown_routes_become_unsupported_errors():
    client = GuardedClient(FakeClient())
    assert client.fine(3) == 3
    with pytest.raises(UnsupportedByGitLab, match="^GitLab's MLflow API does not support unknown;"):
        client.unknown()
    with pytest.raises(UnsupportedByGitLab,
                       match=r"old_style \(/api/2.0/mlflow/registered-models/alias answered"):
        client.old_style()
    with pytest.raises(RestException, match="no such run"):  # a plain not-found stays one
        client.missing()


def test_a_gitlab_uri_needs_a_token(monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", GITLAB)
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="set MLFLOW_TRACKING_TOKEN"):
        open_registry(Settings.from_env())
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "glpat-x")
    registry = open_registry(Settings.from_env())  # no request is made until it is used
    assert isinstance(registry, GitLabRegistry)


def test_pointer_log_moves_and_clears_aliases(monkeypatch, tmp_path):
    """The alias log works on any MLflow store; here the local one."""
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    registry = GitLabRegistry(Settings.from_env().tracking_uri)
    assert registry.alias_version("m", "champion") is None
    registry.move_alias("m", "champion", "1.0.0")
    registry.move_alias("m", "staging", "1.0.1")
    registry.move_alias("m", "champion", "1.0.1")
    assert registry.alias_version("m", "champion") == "1.0.1"
    assert registry.alias_version("m", "staging") == "1.0.1"
    registry.move_alias("m", "champion", None)
    assert registry.alias_version("m", "champion") is None
    registry.move_alias("m", "champion", "1.0.0")
    assert registry.alias_version("m", "champion") == "1.0.0"
