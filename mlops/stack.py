"""The persistent local stack (`mlops server`): a Prefect server with its UI and an MLflow server
on the local store, detached from the command that starts them, with pid files and logs under
MLOPS_HOME/stack. Commands keep logging to the local store directly (SQLite, no HTTP per
metric); the MLflow server reads the same store for its UI and for image URLs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tasks.adapters.stack_state import healthy
from tasks.core.errors import ConfigError, MlopsError
from tasks.core.settings import Settings

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Service:
    """One server of the stack: how to start it and where it answers."""

    name: str
    url: str        # what people open (a worker: its pool)
    health: str | None  # answers 200 when ready; None: a worker, ready once its log says started
    command: tuple[str, ...]
    env: Mapping[str, str]
    port: int | None = None

    def pid_file(self, stack_dir: Path) -> Path:
        return stack_dir / f"{self.name}.pid"

    def log_file(self, stack_dir: Path) -> Path:
        return stack_dir / f"{self.name}.log"


@dataclass(frozen=True)
class ServiceState:
    service: Service
    pid: int | None
    healthy: bool

    @property
    def up(self) -> bool:
        return self.pid is not None and self.healthy


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int, name: str) -> bool:
    """The pid runs and is still our server (a pid file can outlive its process)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return name in cmdline


def services(found: Settings, base_env: Mapping[str, str]) -> list[Service]:
    """Prefect always; MLflow only for a local store (an HTTP tracking server is its own UI)."""
    prefect_home = found.stack_dir / "prefect-home"
    prefect_env = {k: v for k, v in base_env.items() if k != "PREFECT_API_URL"}
    port = found.prefect_port
    prefect_env.update(PREFECT_HOME=str(prefect_home), PREFECT_UI_ENABLED="true",
                       PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api",  # the browser's API
                       PREFECT_SERVER_ANALYTICS_ENABLED="false")
    out = [Service(
        name="prefect", url=f"http://127.0.0.1:{port}",
        health=f"http://127.0.0.1:{port}/api/health", port=port, env=prefect_env,
        command=(str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                 "--port", str(port)))]
    if found.tracking_uri.startswith("sqlite:"):
        port = found.mlflow_port
        out.append(Service(
            name="mlflow", url=f"http://127.0.0.1:{port}",
            health=f"http://127.0.0.1:{port}/health", port=port,
            env={**base_env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            command=(str(BIN / "mlflow"), "server", "--backend-store-uri", found.tracking_uri,
                     "--default-artifact-root", found.artifact_root.as_uri(),
                     "--host", "127.0.0.1", "--port", str(port), "--workers", "1")))
    return out


def state(service: Service, stack_dir: Path) -> ServiceState:
    try:
        pid = int(service.pid_file(stack_dir).read_text().strip())
    except (OSError, ValueError):
        pid = None
    if pid is not None and not _alive(pid, service.name):
        pid = None
    ready = pid is not None and (service.health is None or healthy(service.health))
    return ServiceState(service, pid, ready)


def _start_one(service: Service, stack_dir: Path) -> int:
    if service.port is not None and port_in_use(service.port):
        variable = f"MLOPS_{service.name.upper()}_PORT"
        raise ConfigError(f"port {service.port} is taken by another process: stop it or set "
                          f"{variable} to a free port")
    stack_dir.mkdir(parents=True, exist_ok=True)
    with open(service.log_file(stack_dir), "ab") as log:
        # a session of its own: the server outlives this command and its terminal
        process = subprocess.Popen(list(service.command), stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=dict(service.env),
                                   start_new_session=True)
    service.pid_file(stack_dir).write_text(f"{process.pid}\n")
    return process.pid


def _ready(service: Service, stack_dir: Path, log_from: int) -> bool:
    if service.health is not None:
        return healthy(service.health)
    try:  # a worker: `prefect worker start` logs "Worker '…' started!" once it polls
        with open(service.log_file(stack_dir), "rb") as log:
            log.seek(log_from)
            return b"started!" in log.read()
    except OSError:
        return False


def _wait_healthy(service: Service, pid: int, stack_dir: Path, timeout_s: float,
                  log_from: int = 0) -> None:
    deadline = time.monotonic() + timeout_s
    what = service.health or "its log"
    while time.monotonic() < deadline:
        if not _alive(pid, service.name):
            service.pid_file(stack_dir).unlink(missing_ok=True)
            raise MlopsError(f"the {service.name} process exited while starting: see "
                             f"{service.log_file(stack_dir)}")
        if _ready(service, stack_dir, log_from):
            return
        time.sleep(0.3)
    raise MlopsError(f"the {service.name} process did not get ready ({what}) within "
                     f"{timeout_s:.0f} s: see {service.log_file(stack_dir)}")


def start_services(chosen: list[Service], stack_dir: Path, timeout_s: float,
                   say: Callable[[str], None]) -> list[ServiceState]:
    """Start what is not running (idempotent), wait until each is ready."""
    started: list[tuple[Service, int, int]] = []
    for service in chosen:
        current = state(service, stack_dir)
        if current.up:
            say(f"{service.name}: already running (pid {current.pid}) at {service.url}")
            continue
        log = service.log_file(stack_dir)
        log_from = log.stat().st_size if log.exists() else 0
        if current.pid is not None:
            started.append((service, current.pid, 0))  # started, not ready yet: wait for it
        else:
            started.append((service, _start_one(service, stack_dir), log_from))
            say(f"{service.name}: starting at {service.url} (log {log})")
    for service, pid, log_from in started:  # all boot at once; the first start creates databases
        _wait_healthy(service, pid, stack_dir, timeout_s, log_from)
    return [state(s, stack_dir) for s in chosen]


def start(found: Settings, base_env: Mapping[str, str], say: Callable[[str], None]
          ) -> list[ServiceState]:
    """Start the servers that are not running (idempotent), wait until every one answers."""
    found.artifact_root.mkdir(parents=True, exist_ok=True)  # the MLflow server's artifact root
    states = start_services(services(found, base_env), found.stack_dir, found.server_startup_s,
                            say)
    _write_state(found)
    return states


def _write_state(found: Settings) -> None:
    """What other commands read to find the stack (MLOPS_HOME/stack/stack.json)."""
    urls = {"prefect_api_url": f"http://127.0.0.1:{found.prefect_port}/api"}
    if found.tracking_uri.startswith("sqlite:"):
        urls["mlflow_url"] = f"http://127.0.0.1:{found.mlflow_port}"
        urls["mlflow_store"] = found.tracking_uri  # what it serves: reads may go through it
    (found.stack_dir / "stack.json").write_text(json.dumps(urls, indent=2) + "\n")


def stop_services(chosen: list[Service], stack_dir: Path, say: Callable[[str], None]) -> None:
    """Terminate each one's process group (SIGTERM, then SIGKILL after 20 s)."""
    for service in chosen:
        current = state(service, stack_dir)
        if current.pid is None:
            say(f"{service.name}: not running")
        else:
            _terminate_group(current.pid, service.name)
            say(f"{service.name}: stopped (pid {current.pid})")
        service.pid_file(stack_dir).unlink(missing_ok=True)


def stop(found: Settings, base_env: Mapping[str, str], say: Callable[[str], None]) -> None:
    """Stop the servers and forget their URLs."""
    stop_services(services(found, base_env), found.stack_dir, say)
    (found.stack_dir / "stack.json").unlink(missing_ok=True)


def _terminate_group(pid: int, name: str, timeout_s: float = 20) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _alive(pid, name):
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
