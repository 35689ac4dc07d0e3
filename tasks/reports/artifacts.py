"""Plots and reports where people look: Prefect artifacts on the run that made them. Prefect
shows an image only from a URL, so images need an MLflow server: the tracking server, or on a
laptop the local stack's MLflow server over the same store, serves the file
(`/get-artifact?path=…&run_uuid=…`) and its UI shows a report (the artifact view); with a local
store and no server up a markdown artifact says where the files are instead."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode, urlparse
from urllib.request import url2pathname

from tasks.core.redact import redact
from tasks.core.steps import artifact_key

if TYPE_CHECKING:
    from tasks.adapters.mlflow_registry import Registry


def _base(registry: Registry) -> str | None:
    if not getattr(registry, "serves_artifact_files", False):
        return None
    if not registry.uri.startswith(("http://", "https://")):
        # a local store: the local stack's MLflow server (`mlops server start`) reads the same
        # store, so it serves these files and pages while it is up
        return getattr(registry, "ui_url", None)
    parts = urlparse(registry.uri)  # no user:password in a link: the browser signs in itself
    return redact(parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()).rstrip("/")


def file_url(registry: Registry, run_id: str, path: str) -> str | None:
    """The file itself (what an `<img>` loads); None when tracking is not an MLflow server."""
    base = _base(registry)
    if base is None:
        return None
    return f"{base}/get-artifact?{urlencode({'path': path, 'run_uuid': run_id})}"


def page_url(registry: Registry, run_id: str, path: str) -> str | None:
    """The MLflow UI's run page with the file open in its artifact viewer (HTML reports render
    there; the file endpoint sends them as downloads)."""
    base = _base(registry)
    if base is None:
        return None
    experiment = registry.client.get_run(run_id).info.experiment_id
    return f"{base}/#/experiments/{experiment}/runs/{run_id}/artifactPath/{quote(path)}"


def location(registry: Registry, run_id: str, path: str) -> str:
    """Where the file is stored (a local path for a local store)."""
    root = registry.client.get_run(run_id).info.artifact_uri
    if root.startswith("file:"):
        root = url2pathname(urlparse(root).path)
    return f"{redact(root).rstrip('/')}/{path}"


def publish_images(registry: Registry, run_id: str, paths: list[str], key: str, what: str
                   ) -> list[str]:
    """One image artifact per PNG (`paths` are artifact paths in the run, e.g. plots/roc.png),
    keyed `<key>-<file stem>`; the keys made. Without URLs: one `<key>-plots` markdown artifact
    listing the files."""
    from prefect.artifacts import create_image_artifact, create_markdown_artifact

    images = [p for p in paths if p.lower().endswith(".png")]
    if not images or not getattr(registry, "serves_artifact_files", False):
        return []
    urls = {p: url for p in images if (url := file_url(registry, run_id, p))}
    if len(urls) == len(set(images)):
        keys = []
        for path, url in urls.items():
            keys.append(artifact_key(key, Path(path).stem))
            create_image_artifact(image_url=url, key=keys[-1],
                                  description=f"{what}: {Path(path).stem.replace('_', ' ')}")
        return keys
    files = [f"- {Path(p).stem.replace('_', ' ')}: `{location(registry, run_id, p)}`"
             for p in images]
    create_markdown_artifact(
        key=artifact_key(key, "plots"), description=f"{what}: where the plots are",
        markdown="\n".join([
            f"# {what}", "",
            "Tracking is not an MLflow server, so the Prefect UI has no URL to show these images "
            "from (Prefect image artifacts take a URL). The files:", "", *files, "",
            f"Browse them with `mlflow ui --backend-store-uri {redact(registry.uri)}`, or set "
            "MLFLOW_TRACKING_URI to an MLflow server to see them here.", ""]))
    return [artifact_key(key, "plots")]


def publish_link(registry: Registry, run_id: str, path: str, text: str, key: str
                 ) -> str | None:
    """A link artifact to one report file in the MLflow UI (over HTTP); otherwise a markdown
    artifact with its path. The key made."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact

    if not getattr(registry, "serves_artifact_files", False):  # GitLab: no file links
        return None
    url = page_url(registry, run_id, path)
    if url:
        create_link_artifact(url, link_text=text, key=key, description=text)
    else:
        create_markdown_artifact(
            key=key, description=text,
            markdown=f"**{text}**: `{location(registry, run_id, path)}` (tracking is a local "
                     "store: no URL to open it from)\n")
    return key
