"""Notebook training: a data scientist's parameterized notebook run with papermill (as in
GitLab's data-science CI), `is_local_development=False` and the device injected, the executed
notebook and what it logged kept in an MLflow run of experiment notebooks/<name>."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from pydantic import BaseModel

from tasks.adapters.mlflow_registry import Registry
from tasks.core.errors import ConfigError, ExitCode, MlopsError
from tasks.core.lineage import git_commit
from tasks.core.settings import Settings
from tasks.core.steps import step

KERNEL = "python3"


class NotebookFailed(MlopsError):
    """A cell raised; the executed notebook (with the error) is in the MLflow run."""

    exit_code = ExitCode.FAILED


class NotebookRun(BaseModel):
    notebook: str
    run_id: str
    run_url: str
    metrics: dict[str, float]
    seconds: float


def check_notebook(path: str) -> Path:
    """An existing .ipynb with a cell tagged `parameters` (where papermill injects values)."""
    notebook = Path(path)
    if notebook.suffix != ".ipynb":
        raise ConfigError(f"{path} is not a notebook (.ipynb)")
    if not notebook.is_file():
        raise ConfigError(f"notebook {path} does not exist")
    try:
        cells = json.loads(notebook.read_text())["cells"]
    except (ValueError, KeyError):
        raise ConfigError(f"{path} is not a valid Jupyter notebook") from None
    if not any("parameters" in (c.get("metadata", {}).get("tags") or []) for c in cells):
        raise ConfigError(f"{path} has no cell tagged 'parameters': tag the cell that sets "
                          "is_local_development, device and mlflow_run_id")
    return notebook


def kernel_manager(env: dict[str, str]):
    """A Jupyter kernel manager whose kernels see `env` and nothing else of this process."""
    from jupyter_client.manager import AsyncKernelManager

    class ScopedKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            kw["env"] = dict(env)
            return await super().start_kernel(**kw)

    return ScopedKernelManager


def kernel_env(settings: Settings) -> dict[str, str]:
    """What a notebook kernel needs: the basics, where to log, and nothing else (no GitLab,
    Snowflake or Prefect credentials)."""
    env = {**settings.child_env, "MLFLOW_TRACKING_URI": settings.tracking_uri,
           "MLOPS_HOME": str(settings.home), "MLOPS_CONFIG_DIR": str(settings.config_dir)}
    if settings.tracking_token:
        env["MLFLOW_TRACKING_TOKEN"] = settings.tracking_token
    return env


def run_notebook(path: str, registry: Registry, settings: Settings, device: str,
                 parameters: dict | None = None, cwd: Path | None = None) -> NotebookRun:
    """Execute the notebook into an MLflow run; a failing cell fails the run, and the executed
    notebook is logged either way so the traceback is one click away."""
    import time

    import papermill
    from papermill.exceptions import PapermillExecutionError

    notebook = check_notebook(path)
    name = notebook.stem
    started = time.perf_counter()
    tags = {"mlops.notebook": str(path), "git_commit": git_commit(settings.ci) or "unknown",
            "device": device}
    with registry.run(f"notebooks/{name}", name, tags) as run_id, \
            tempfile.TemporaryDirectory(prefix="mlops-notebook-") as tmp:
        injected = {"is_local_development": False, "device": device, "mlflow_run_id": run_id,
                    **(parameters or {})}
        registry.log_run(run_id, params={f"notebook.{k}": v for k, v in injected.items()
                                         if k != "mlflow_run_id"})
        executed = Path(tmp) / f"{name}.executed.ipynb"
        try:
            papermill.execute_notebook(str(notebook), str(executed), parameters=injected,
                                       kernel_name=KERNEL, cwd=str(cwd or Path.cwd()),
                                       progress_bar=False, log_output=False,
                                       kernel_manager_class=kernel_manager(kernel_env(settings)))
        except PapermillExecutionError as exc:
            registry.log_files(run_id, [str(executed)], "notebook")
            raise NotebookFailed(f"{path}: cell {exc.exec_count} raised {exc.ename}: "
                                 f"{exc.evalue}"[:400]) from None
        registry.log_files(run_id, [str(executed)], "notebook")
    return NotebookRun(notebook=str(path), run_id=run_id, run_url=registry.run_url(run_id),
                       metrics=registry.run_metrics(run_id),
                       seconds=round(time.perf_counter() - started, 1))


@step("run-notebook")
def execute(path: str, registry: Registry, settings: Settings, device: str) -> NotebookRun:
    from prefect.logging import get_run_logger

    result = run_notebook(path, registry, settings, device)
    get_run_logger().info(f"{path}: executed in {result.seconds:.0f} s; "
                          + ", ".join(f"{k} {v:.4f}" for k, v in sorted(result.metrics.items()))
                          + f"; MLflow {result.run_url}")
    return result
