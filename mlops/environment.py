"""Process defaults set before Prefect or MLflow are imported (the user's own values win)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from tasks.core.settings import LIBRARY_DEFAULTS


def apply_defaults() -> None:
    home = Path(os.environ.get("MLOPS_HOME", ".mlops")).resolve()
    defaults = {
        "PREFECT_LOGGING_SETTINGS_PATH": str(Path(__file__).with_name("logging.yml")),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # the very first ephemeral server creates its database, which takes ~30 s here
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_LOCAL_STORAGE_PATH": str(home / "prefect-results"),
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
        **LIBRARY_DEFAULTS,
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", message=".*type hints to the `predict` method.*")
    warnings.filterwarnings("ignore", category=FutureWarning, module="mlflow")
