"""prefect.yaml pull step: run from the project directory the worker names, never the deployer's."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tasks.core.outcomes import install_outcome_filter
from tasks.core.redact import install_log_redaction
from tasks.core.settings import Settings, apply_process_defaults

ENTRYPOINT = Path("flows") / "training.py"


def enter_project(directory: str | None = None) -> dict[str, str]:
    """chdir to MLOPS_PROJECT_DIR (the image sets /opt/prefect-mlops; a shell runner its checkout)."""
    target = directory or Settings.from_env().project_dir
    if not target:
        raise RuntimeError("MLOPS_PROJECT_DIR is not set where this flow runs: set it to the "
                           "project checkout (the training image sets /opt/prefect-mlops)")
    path = Path(target).expanduser().resolve()
    if not (path / ENTRYPOINT).is_file():
        raise RuntimeError(f"MLOPS_PROJECT_DIR={target} holds no {ENTRYPOINT}: point it at a "
                           f"checkout of this project")
    os.chdir(path)
    sys.path.insert(0, str(path))  # the checkout's flows/ and tasks/ win over an image's copy
    apply_process_defaults()  # this is where a worker-started flow run begins
    install_log_redaction()  # its logging was set up before this step, not by mlops/logging.yml
    install_outcome_filter()  # a rejection reads as its one line, not a traceback
    return {"directory": str(path)}
