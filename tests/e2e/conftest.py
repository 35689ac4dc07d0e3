"""End-to-end tier: real processes and servers on loopback (PostgreSQL, MLflow, the CLI)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
import warnings
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# one end-to-end test, the start of its module's servers included (the GitLab job test: about
# 2.5 minutes on this 2-core machine), with room for a busy machine
E2E_TIMEOUT_S = 900
PG_HOST = os.environ.get("PGHOST", "127.0.0.1")  # GitLab CI: the postgres service


def pytest_collection_modifyitems(config, items):
    """The end-to-end tier's timeout on each of its tests, unless one names its own."""
    for item in items:
        if item.path.is_relative_to(HERE) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT_S))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s")


def _pg_connect(dbname: str = "postgres"):
    import psycopg

    return psycopg.connect(host=PG_HOST, port=5432, user="postgres", dbname=dbname,
                           autocommit=True)


def ensure_postgres() -> None:
    """PostgreSQL runs on this machine; start the cluster once if it is down."""
    try:
        _pg_connect().close()
        return
    except Exception:
        versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
        if not versions or not shutil.which("pg_ctlcluster"):
            missing = ("PostgreSQL is not installed here: the end-to-end tests that need it are "
                       "SKIPPED (install postgresql, trust auth on 127.0.0.1:5432)")
            warnings.warn(missing, stacklevel=2)
            pytest.skip(missing)
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main",
                        "start"], check=False, capture_output=True)
        time.sleep(2)
        _pg_connect().close()


@contextlib.contextmanager
def postgres_database(prefix: str):
    """A throw-away database; its URI for SQLAlchemy-based servers."""
    ensure_postgres()
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    conn = _pg_connect()
    conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@{PG_HOST}:5432/{name}"
    finally:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@contextlib.contextmanager
def background(cmd: list[str], log: Path, env: dict | None = None):
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, cwd=REPO)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "MLFLOW_", "MLOPS_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["MLOPS_AUDIT_KEY"] = "e2e-audit-key"  # production changes need signed audit records
    # MLflow 3's server otherwise starts ~8 job consumer processes (huey), each importing MLflow
    # (~4 s of CPU apiece) for jobs nothing here uses; `mlops server start` turns them off too
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on loopback with a PostgreSQL backend store."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    with postgres_database("mlflow_e2e") as db_uri, background(
        [str(BIN / "mlflow"), "server", "--backend-store-uri",
         db_uri.replace("postgresql://", "postgresql+psycopg://"),  # SQLAlchemy 2.0: psycopg 3
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        root / "server.log", env=cli_env(),
    ) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", 120, proc)
        yield url


@pytest.fixture(scope="session")
def mlflow_sqlite_server(tmp_path_factory):
    """A real `mlflow server` on a SQLite file that clients on this machine may also open
    directly (artifacts in a plain folder both can reach); (server URL, direct sqlite URI)."""
    root = tmp_path_factory.mktemp("mlflow-sqlite-server")
    port = free_port()
    store = f"sqlite:///{root / 'mlflow.db'}"
    with background(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", store, "--default-artifact-root",
         str(root / "artifacts"), "--no-serve-artifacts", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        root / "server.log", env=cli_env(),
    ) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", 120, proc)
        yield url, store


@pytest.fixture(params=["older", "newer"])
def gitlab_mlflow(request):
    """GitLab's MLflow API as gitlabhq's source says it answers (tests/fakes/gitlab_mlflow.py),
    in both behaviours of `model-versions/create`: older GitLab ignores `run_id`, newer GitLab
    promotes the run. Per test: the fake is in memory and starts at once."""
    from tests.fakes.gitlab_mlflow import GitLabMlflow

    fake = GitLabMlflow(request.param).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real `prefect server start` on loopback with a PostgreSQL database; its API URL."""
    root = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    with postgres_database("prefect_e2e") as uri:
        env = cli_env(PREFECT_API_DATABASE_CONNECTION_URL=uri.replace(
            "postgresql://", "postgresql+asyncpg://"), PREFECT_HOME=str(root / "home"),
            # the UI too (tests/e2e/test_ui.py drives it), told the API's real port
            PREFECT_UI_ENABLED="true", PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api")
        with background([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                         "--port", str(port)], root / "server.log", env=env) as proc:
            api = f"http://127.0.0.1:{port}/api"
            wait_http(f"{api}/health", 180, proc)
            yield api


def paused_run(api: str, model: str, timeout_s: float = 240) -> str:
    body = json.dumps({"flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}}}).encode()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        req = urllib.request.Request(f"{api}/flow_runs/filter", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            runs = [r for r in json.loads(resp.read()) if r["parameters"].get("model") == model]
        if runs:
            return runs[0]["id"]
        time.sleep(1)
    raise TimeoutError(f"no paused run for {model}")


def local_client(state: Path):
    """A client of a local store, tracking and registry alike: without the registry URI, MLflow
    asks whatever registry an earlier in-process test set globally (mlflow.set_registry_uri)."""
    import mlflow

    uri = f"sqlite:///{state / 'mlflow.db'}"
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def mlops(args: list[str], env: dict, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "mlops"), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, **kw)


def descendants(pid: int) -> list[int]:
    """Every process below pid (flow runs start in their own session, so killpg misses them)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out
