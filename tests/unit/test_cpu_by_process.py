"""benchmarks/cpu_by_process.py: the table that says where a test run's CPU goes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from cpu_by_process import kind  # noqa: E402


@pytest.mark.parametrize(("command", "expected"), [
    ("/r/.venv/bin/python /r/.venv/bin/mlops promote fraud --as bob", "mlops promote"),
    ("/r/.venv/bin/python -m uvicorn --factory prefect.server.api.server:create_app --host "
     "127.0.0.1 --port 1 --log-level error --lifespan on", "Prefect server, temporary (mlops, tests)"),
    ("/r/.venv/bin/python /r/.venv/bin/prefect server start --host 127.0.0.1", "Prefect server"),
    ("/r/.venv/bin/python -m huey.bin.huey_consumer mlflow.server.jobs._huey_consumer.huey_instance",
     "MLflow server's job consumers"),
    ("/r/.venv/bin/python /r/.venv/bin/uvicorn --host 127.0.0.1 --port 1 --workers 1 "
     "mlflow.pyfunc.scoring_server.app:app", "MLflow scoring server (staging)"),
    ("/r/.venv/bin/python -m prefect.runner._workspace_supervisor /tmp/x/supervisor.json",
     "flow run process"),
    ("/usr/bin/sleep 5", "other: sleep 5"),
])
def test_processes_are_named_by_what_they_run(command, expected):
    assert kind(command) == expected


def test_a_child_that_burns_cpu_is_counted_and_the_exit_code_kept(tmp_path):
    """A child busy for about a second is found below the command, the detached grandchild
    too; the command's own exit code comes back."""
    busy = ("import time; t = time.process_time()\n"
            "while time.process_time() - t < 1.0: pass")
    script = (f"import subprocess, sys; subprocess.run([sys.executable, '-c', {busy!r}], "
              "start_new_session=True); sys.exit(3)")
    out = tmp_path / "cpu.json"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "cpu_by_process.py"),
                           "--json", str(out), "--", sys.executable, "-c", script],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    rows = {name: cpu for name, cpu, _ in json.loads(out.read_text())["rows"]}
    assert rows["other: python -c"] >= 0.5, rows
    assert "CPU-min below it" in done.stdout
