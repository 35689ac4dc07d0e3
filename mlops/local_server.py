"""Laptop mode: the local stack when it is up (`mlops server start`), else a temporary Prefect
API server started before the heavy imports.

Without PREFECT_API_URL, Prefect starts the same temporary server itself on the first flow
run, but only after this process has imported everything (about 5 s of the server's own
imports in this process, then the subprocess's start-up). Starting the identical subprocess
first lets its start-up overlap with importing XGBoost, MLflow and scikit-learn.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from tasks.core.localproc import free_port, terminate


@dataclass
class LocalServer:
    process: subprocess.Popen
    api_url: str

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"temporary Prefect server exited with code {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"temporary Prefect server did not start within {timeout_s:.0f}s")

    def stop(self) -> None:
        terminate(self.process, timeout_s=5)


def environment() -> dict[str, str]:
    """This process's environment, for the local stack's servers to inherit."""
    return dict(os.environ)


def use_local_stack() -> bool:
    """Point this process at the local stack (`mlops server start`) when it is up and no
    PREFECT_API_URL is set; must run before prefect is imported. True when it is used."""
    if os.environ.get("PREFECT_API_URL") or "prefect" in sys.modules:
        return False
    from tasks.adapters.stack_state import read_state
    from tasks.core.errors import MlopsError
    from tasks.core.settings import Settings

    try:
        found = Settings.from_env()
    except MlopsError:  # a bad setting: the command itself says so
        return False
    urls = read_state(found.stack_dir) if found.use_local_stack else None
    if urls is None:
        return False
    os.environ["PREFECT_API_URL"] = urls["prefect_api_url"]
    if urls.get("mlflow_url"):
        os.environ.setdefault("MLOPS_MLFLOW_UI_URL", urls["mlflow_url"])
    return True


def start_if_needed() -> LocalServer | None:
    """The local stack when it is up, else a temporary server, unless PREFECT_API_URL names
    one; must run before prefect import."""
    if os.environ.get("PREFECT_API_URL") or "prefect" in sys.modules or use_local_stack():
        return None
    port = free_port()
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
           "PREFECT__SERVER_FINAL": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    server = LocalServer(process, f"http://127.0.0.1:{port}/api")
    atexit.register(server.stop)
    os.environ["PREFECT_API_URL"] = server.api_url
    return server
