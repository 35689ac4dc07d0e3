"""Which registry a run reads before it knows it trains (tasks/adapters/registries.open_reads):
MLflow's REST API where a server serves the store, the full registry everywhere else."""

from __future__ import annotations

import json

import pytest

from tasks.adapters import registries
from tasks.adapters.mlflow_rest import RestRegistry
from tasks.adapters.model_version import run_page
from tasks.core.settings import Settings
from tests.conftest import loopback_http


@pytest.fixture
def mlflow_server(monkeypatch):
    """A tracking server on loopback: /health answers 200, the registry search the given status."""
    answer = {"status": 200}
    asked: list[str] = []
    codes = {403: "PERMISSION_DENIED", 404: "ENDPOINT_NOT_FOUND"}

    def reply(path: str) -> tuple[int, bytes]:
        asked.append(path.split("?")[0])
        status = 200 if path == "/health" else answer["status"]
        return status, json.dumps({"registered_models": []} if status == 200 else
                                  {"error_code": codes[status]}).encode()

    with loopback_http(reply) as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setenv("MLOPS_TRACKING_RETRIES", "1")
        yield answer, asked


@pytest.fixture
def opened(monkeypatch):
    """open_registry replaced: what it was asked to open, and a stand-in for the full registry."""
    calls: list[str] = []

    def full(found: Settings, endpoint: str | None = None):
        calls.append(found.tracking_uri)
        return "the full registry"

    monkeypatch.setattr(registries, "open_registry", full)
    return calls


def test_a_tracking_server_is_read_over_rest_without_mlflow(mlflow_server, opened):
    _, asked = mlflow_server
    reads = registries.open_reads(Settings.from_env())
    assert isinstance(reads, RestRegistry) and opened == []
    assert asked == ["/health", "/api/2.0/mlflow/registered-models/search"]


def test_a_server_that_wants_mlflows_own_credentials_is_read_through_its_client(
        mlflow_server, opened):
    """MLFLOW_TRACKING_USERNAME and _PASSWORD reach the server through MLflow's client only."""
    answer, _ = mlflow_server
    answer["status"] = 403
    assert registries.open_reads(Settings.from_env()) == "the full registry"
    assert len(opened) == 1


def test_any_other_refusal_is_an_error_not_a_fallback(mlflow_server, opened):
    from tasks.adapters.mlflow_rest import RestError

    answer, _ = mlflow_server
    answer["status"] = 404
    with pytest.raises(RestError):
        registries.open_reads(Settings.from_env())
    assert opened == []


def test_a_store_the_local_stack_serves_is_read_through_its_server(tmp_path, monkeypatch, opened):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setattr(registries, "served_store_url", lambda found: "http://127.0.0.1:5999")
    reads = registries.open_reads(Settings.from_env())
    assert isinstance(reads, RestRegistry) and opened == []
    assert reads.client.base.startswith("http://127.0.0.1:5999/")
    assert reads.uri == f"sqlite:///{tmp_path / 'mlflow.db'}"  # the store: it names the anchors


def test_a_file_store_no_server_serves_and_gitlab_get_the_full_registry(tmp_path, monkeypatch,
                                                                       opened):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setattr(registries, "served_store_url", lambda found: None)
    assert registries.open_reads(Settings.from_env()) == "the full registry"
    gitlab = "https://gitlab.example.com/api/v4/projects/7/ml/mlflow"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", gitlab)
    assert registries.open_reads(Settings.from_env()) == "the full registry"
    assert opened[-1] == gitlab


def test_a_run_that_trains_writes_through_the_full_registry(tmp_path, monkeypatch, opened):
    from tasks.adapters.mlflow_registry import Registry

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    found = Settings.from_env()
    rest = RestRegistry("http://127.0.0.1:1")
    assert registries.open_writes(rest, found) == "the full registry"  # REST reads only
    full = Registry.__new__(Registry)  # already the full registry: not opened twice
    assert registries.open_writes(full, found) is full and len(opened) == 1



def test_a_store_the_local_stack_serves_is_written_through_its_server(tmp_path, monkeypatch):
    """The client goes to the server (no SQL store, no migration check of its own: about 0.4 s
    a training run); the store's URI still names the audit anchors. No server: the file."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setattr(registries, "served_store_url", lambda found: "http://127.0.0.1:5999")
    served = registries.open_registry(Settings.from_env())
    assert served.uri == store and served.client._tracking_client.tracking_uri == \
        "http://127.0.0.1:5999"
    assert Settings.from_env().tracking_uri == store  # MLflow's env var still names the store
    monkeypatch.setattr(registries, "served_store_url", lambda found: None)
    direct = registries.open_registry(Settings.from_env())
    assert direct.uri == store and direct.client._tracking_client.tracking_uri == store

def test_run_pages_link_the_server_or_the_local_ui_or_say_how_to_browse():
    asked: list[str] = []

    def experiment() -> str:
        asked.append("asked")
        return "3"

    assert run_page("http://mlflow:5000/", None, "r1", experiment) == \
        "http://mlflow:5000/#/experiments/3/runs/r1"
    assert run_page("sqlite:///x.db", "http://127.0.0.1:5000", "r1", experiment) == \
        "http://127.0.0.1:5000/#/experiments/3/runs/r1"
    assert run_page("sqlite:///x.db", None, "r1", experiment) == \
        "run r1 (browse with: mlflow ui --backend-store-uri sqlite:///x.db)"
    assert asked == ["asked", "asked"]  # no page, no request
