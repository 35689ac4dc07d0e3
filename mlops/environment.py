"""Process defaults set as the CLI starts, before Prefect or MLflow are imported."""

from __future__ import annotations

import warnings
from pathlib import Path

from tasks.core.settings import apply_process_defaults


def apply_defaults() -> None:
    apply_process_defaults(
        extra={"PREFECT_LOGGING_SETTINGS_PATH": str(Path(__file__).with_name("logging.yml"))})
    warnings.filterwarnings("ignore", message=".*type hints to the `predict` method.*")
    warnings.filterwarnings("ignore", category=FutureWarning, module="mlflow")
