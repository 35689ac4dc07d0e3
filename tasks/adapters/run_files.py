"""Reading a text file back from a run's artifacts (a model card, a stored report)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tasks.adapters.mlflow_registry import Registry


def run_text(registry: Registry, run_id: str, name: str) -> str | None:
    """The artifact `name` of the run as text; None when the run does not have it."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="mlops-read-") as tmp:
        try:
            path = registry.client.download_artifacts(run_id, name, tmp)
        except (MlflowException, OSError):
            return None
        return Path(path).read_text(errors="replace")
