"""Integration tier: whole flows under one Prefect test server, MLflow in a temp folder."""

from __future__ import annotations

import pytest

from tests.conftest import config_yaml


@pytest.fixture(scope="session", autouse=True)
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh MLOPS_HOME and config dir; the MLflow store is sqlite inside it."""
    configs = tmp_path / "configs"
    configs.mkdir()
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("MLOPS_CONFIG_DIR", str(configs))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLOPS_DEVICE", "cpu")
    return tmp_path


@pytest.fixture
def write_config(home):
    def write(name: str = "tiny", task: str = "binary", **kw) -> str:
        (home / "configs" / f"{name}.yaml").write_text(config_yaml(task, name=name, **kw))
        return name

    return write


@pytest.fixture
def registry(home):
    from tasks.adapters.mlflow_registry import Registry
    from tasks.adapters.registries import open_registry
    from tasks.core.settings import Settings

    def open_() -> Registry:
        return open_registry(Settings.from_env())

    return open_


def versions(reg, name: str) -> list:
    from mlflow.exceptions import MlflowException

    try:
        return reg.client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return []
