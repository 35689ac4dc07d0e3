"""Notebook training: a parameterized notebook executed with papermill, tracked in MLflow."""

from __future__ import annotations

from prefect import flow

from tasks.adapters.registries import connect
from tasks.adapters.slack import notify_flow_failure
from tasks.core.device import select_device
from tasks.core.heartbeats import beating
from tasks.core.runnames import run_name
from tasks.core.settings import Settings
from tasks.training.notebook import NotebookRun, check_notebook, execute


@flow(name="notebook-training", flow_run_name=run_name("notebook"), log_prints=True,
      on_failure=[notify_flow_failure], on_crashed=[notify_flow_failure])
@beating
def notebook_training(notebook: str) -> NotebookRun:
    """Run a parameterized notebook with papermill (is_local_development=False, the runner's
    device), tracked in MLflow.

    Args:
        notebook: The notebook to run: a .ipynb path in the project (notebooks/<name>.ipynb).
    """
    settings = Settings.from_env()
    check_notebook(notebook)
    registry = connect(settings)
    return execute(path=notebook, registry=registry, settings=settings,
                   device=select_device(settings.device, settings.cuda_visible_devices))
