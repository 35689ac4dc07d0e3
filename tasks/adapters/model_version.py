"""A registered model version as stages see it: its reference in the registry, and its local
copy once downloaded and verified (what every load of a version goes through)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class ModelVersionRef:
    name: str
    version: str
    run_id: str | None
    source: str
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class LocalVersion:
    """A registered version downloaded and verified: its folder, feature spec, input example,
    the SHA-256 of its booster and of its integrity manifest (None: registered before
    manifests, only the booster was checked)."""

    ref: ModelVersionRef
    path: Path
    spec: dict
    example: pd.DataFrame
    booster_sha256: str
    manifest_sha256: str | None = None


def read_spec_and_example(folder: Path) -> tuple[dict, pd.DataFrame] | None:
    """The feature spec and input example of a model folder; None when either is missing."""
    try:
        spec = json.loads(next(folder.rglob("feature_spec.json")).read_text())
        payload = json.loads((folder / "input_example.json").read_text())
    except (StopIteration, FileNotFoundError, ValueError):
        return None
    import pandas as pd

    return spec, pd.DataFrame(payload["data"], columns=payload["columns"])


def run_page(shown_uri: str, ui_url: str | None, run_id: str,
             experiment: Callable[[], str]) -> str:
    """A run's page in the MLflow UI (the server's, or the UI serving a local store), or how
    to browse it; `shown_uri` is the store's URI with its credentials redacted, `experiment`
    is asked only when there is a page to link."""
    base = shown_uri.rstrip("/") if shown_uri.startswith(("http://", "https://")) else ui_url
    if not base:
        return f"run {run_id} (browse with: mlflow ui --backend-store-uri {shown_uri})"
    return f"{base}/#/experiments/{experiment()}/runs/{run_id}"
