"""Environment settings: where state lives and which servers to talk to (never in model YAML)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from tasks.core.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
# quiet MLflow in every process that runs the pipeline (CLI and worker-started flow runs alike)
LIBRARY_DEFAULTS = {
    "GIT_PYTHON_REFRESH": "quiet",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_LOGGING_LEVEL": "ERROR",
    "MLFLOW_LOG_UV_FILES": "false",
}


def apply_library_defaults() -> None:
    """Set LIBRARY_DEFAULTS where the user has not; call before MLflow is imported."""
    for key, value in LIBRARY_DEFAULTS.items():
        os.environ.setdefault(key, value)


@dataclass(frozen=True)
class Settings:
    home: Path
    tracking_uri: str
    config_dir: Path
    device: str
    optuna_storage: str | None
    tracking_retries: int

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("MLOPS_HOME", ".mlops")).resolve()
        tracking = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"
        device = os.environ.get("MLOPS_DEVICE", "auto").lower()
        if device not in DEVICES:
            raise ConfigError(f"MLOPS_DEVICE must be one of {', '.join(DEVICES)}, got {device!r}")
        retries = os.environ.get("MLOPS_TRACKING_RETRIES", "3")
        if not retries.isdigit() or int(retries) < 1:
            raise ConfigError(f"MLOPS_TRACKING_RETRIES must be a positive integer, got {retries!r}")
        return cls(
            home=home,
            tracking_uri=tracking,
            config_dir=Path(os.environ.get("MLOPS_CONFIG_DIR", "configs/models")),
            device=device,
            optuna_storage=os.environ.get("MLOPS_OPTUNA_STORAGE") or None,
            tracking_retries=int(retries),
        )

    @property
    def artifact_root(self) -> Path:
        return self.home / "artifacts"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"


_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


def redact(text: str) -> str:
    """Hide user:password in URLs so they never reach logs, tags or errors."""
    return _CREDENTIALS.sub(r"\g<scheme>***@", text)
