"""Links the Prefect UI shows for a run's files: built from the tracking URI, never carrying
its credentials, and absent where no server can serve them."""

from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import parse_qs, urlparse

from tasks.reports.artifacts import file_url


def registry(uri: str, serves: bool = True) -> SimpleNamespace:
    return SimpleNamespace(uri=uri, serves_artifact_files=serves)


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
