"""Process defaults set as the CLI starts, before Prefect or MLflow are imported."""

from __future__ import annotations

import warnings
from pathlib import Path

from mlops.local_server import use_local_stack
from tasks.core.settings import apply_process_defaults


def apply_defaults() -> None:
    apply_process_defaults(
        extra={"PREFECT_LOGGING_SETTINGS_PATH": str(Path(__file__).with_name("logging.yml"))})
    use_local_stack()  # `mlops server start`'s servers, when they are up
    warnings.filterwarnings("ignore", message=".*type hints to the `predict` method.*")
    warnings.filterwarnings("ignore", category=FutureWarning, module="mlflow")
