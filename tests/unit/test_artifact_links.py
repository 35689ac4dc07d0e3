"""Links the Prefect UI shows for a run's files: built from the tracking URI, never carrying
its credentials, and absent where no server can serve them."""

from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import parse_qs, urlparse

from tasks.reports.artifacts import file_url


def registry(uri: str, serves: bool = True, ui_url: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(uri=uri, serves_artifact_files=serves, ui_url=ui_url)


def test_file_url_is_the_tracking_servers_get_artifact_endpoint():
    url = file_url(registry("http://mlflow.internal:5000/"), "abc123", "plots/roc.png")
    parts = urlparse(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == \
        "http://mlflow.internal:5000/get-artifact"
    assert parse_qs(parts.query) == {"path": ["plots/roc.png"], "run_uuid": ["abc123"]}


def test_credentials_in_the_tracking_uri_never_reach_a_link():
    url = file_url(registry("https://svc:s3cr3t@mlflow.example.com/ml"), "r1", "plots/pr.png")
    assert url.startswith("https://mlflow.example.com/ml/get-artifact?")
    assert "s3cr3t" not in url and "svc" not in url and "@" not in url


def test_no_url_for_a_local_store_or_gitlab():
    assert file_url(registry("sqlite:////tmp/mlflow.db"), "r1", "plots/roc.png") is None
    assert file_url(registry("https://gitlab.example.com/api/v4/projects/1/ml/mlflow",
                             serves=False), "r1", "plots/roc.png") is None


def test_a_local_store_links_to_the_local_stacks_mlflow_server_while_it_is_up():
    from tasks.adapters.registries import open_registry
    from tasks.core.settings import Settings

    local = open_registry(Settings.from_env({"MLOPS_MLFLOW_UI_URL": "http://127.0.0.1:5000/",
                                             "MLFLOW_TRACKING_URI": "sqlite:////tmp/mlops-links-test.db"}))
    assert local.ui_url == "http://127.0.0.1:5000"
    url = file_url(registry("sqlite:////tmp/mlflow.db", ui_url=local.ui_url), "r1", "plots/roc.png")
    assert url == "http://127.0.0.1:5000/get-artifact?path=plots%2Froc.png&run_uuid=r1"
