"""A version served on loopback with MLflow's scoring server, and the smoke tests run against it."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.adapters.mlflow_registry import LocalVersion
from tasks.contracts import predictions
from tasks.contracts.release import SmokeReport
from tasks.core.config import SmokeSpec
from tasks.core.errors import DeployError
from tasks.core.localproc import free_port, terminate


@dataclass
class ModelServer:
    process: subprocess.Popen
    url: str
    log: Path

    def stop(self) -> None:
        terminate(self.process)


def start_model_server(model_uri: str, timeout_s: float, log: Path,
                       env: Mapping[str, str] | None = None) -> ModelServer:
    """Serve one version with MLflow's scoring server on loopback: the command `mlflow models
    serve --env-manager local` runs (MLflow's get_cmd), started from here rather than through
    that CLI, a process that would import MLflow only to start it (about 4 s of CPU per
    deploy). The server gets `env` (no credentials), this interpreter's bin on PATH and the two
    variables MLflow's command sets (the model's path, the request timeout)."""
    from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT
    from mlflow.pyfunc.scoring_server import _SERVER_MODEL_PATH, get_cmd  # the model's variable

    port = free_port()
    bin_dir = str(Path(sys.executable).parent)
    # MLflow annotates host as int; it is quoted into the command as a string
    command, mlflow_env = get_cmd(model_uri, port=port, host="127.0.0.1",  # type: ignore[arg-type]
                                  nworkers=1)
    child = dict(env or {})
    # of the environment get_cmd returns (this process's, copied), only what it adds
    for name in (_SERVER_MODEL_PATH, MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.name):
        child[name] = mlflow_env[name]
    child["PATH"] = f"{bin_dir}{os.pathsep}{child.get('PATH', '/usr/bin:/bin')}"
    program, *args = shlex.split(command)  # "uvicorn --host … mlflow.pyfunc.scoring_server.app:app"
    with open(log, "wb") as out:
        process = subprocess.Popen([os.path.join(bin_dir, program), *args], stdout=out,
                                   stderr=subprocess.STDOUT, env=child, start_new_session=True)
    server = ModelServer(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise DeployError(f"model server for {model_uri} failed to start "
                              f"(exit {process.returncode}): {tail[0][:200]}")
        try:
            with urllib.request.urlopen(f"{server.url}/ping", timeout=2) as resp:
                if resp.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    server.stop()
    raise DeployError(f"model server for {model_uri} did not answer /ping within {timeout_s:.0f}s")


ServerFactory = Callable[[str, float, Path, Mapping[str, str]], ModelServer]


def _invoke(url: str, frame: pd.DataFrame) -> tuple[list, float]:
    body = ('{"dataframe_split": ' + frame.to_json(orient="split", index=False) + "}").encode()
    request = urllib.request.Request(f"{url}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as resp:
        payload = json.loads(resp.read())
    return payload["predictions"], (time.perf_counter() - start) * 1000


def check_predictions(served: list | pd.DataFrame, rows: int, spec: dict) -> list[str]:
    """Shape and range of predictions for the model's task type (the prediction table's rules)."""
    frame = served if isinstance(served, pd.DataFrame) else pd.DataFrame(served)
    return predictions.check_frame(frame, rows, spec["task"], spec["classes"])


def smoke_test(url: str, local: LocalVersion, smoke: SmokeSpec) -> SmokeReport:
    checks: list[str] = []
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
            checks.append(f"ok: /health answered {resp.status}")
    except (urllib.error.URLError, OSError) as exc:
        return SmokeReport(passed=False, checks=[f"FAIL: /health: {exc}"])
    try:
        served, _ = _invoke(url, local.example)
    except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
        return SmokeReport(passed=False, checks=[*checks, f"FAIL: /invocations: {exc}"])
    problems = check_predictions(served, len(local.example), local.spec)
    checks += [f"FAIL: {p}" for p in problems] or [
        f"ok: {len(local.example)} predictions with the right shape and range"]
    latencies = [_invoke(url, local.example.iloc[[i % len(local.example)]])[1]
                 for i in range(smoke.latency_requests)]
    p95 = float(np.percentile(latencies, 95))
    verdict = "ok" if p95 <= smoke.max_latency_ms else "FAIL"
    checks.append(f"{verdict}: p95 latency {p95:.1f} ms over {len(latencies)} single-row "
                  f"requests (budget {smoke.max_latency_ms:g} ms)")
    return SmokeReport(passed=not any(c.startswith("FAIL") for c in checks), checks=checks,
                       p95_ms=p95)
