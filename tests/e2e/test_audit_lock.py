"""One lock per model whatever the access path: a client talking HTTP to an `mlflow server` and a
client opening that server's SQLite file directly exclude each other, so two writers of one
model's audit trail, one through each path, leave one whole chain."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.e2e.conftest import REPO, cli_env

pytestmark = pytest.mark.slow
KEY = "e2e-audit-key"
# one process per access path; both start their attempt at the same wall-clock time
HOLD = """
import json, sys, time
from tasks.adapters import audit_store
from tasks.adapters.mlflow_registry import Registry
from tasks.adapters.audit_trail import AuditTrail, event
from tasks.core.settings import Settings
uri, model, start, mode = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
registry = Registry(uri)
time.sleep(max(0.0, start - time.time()))
if mode == "hold":
    with audit_store.model_lock(registry, model, timeout_s=120):
        began = time.time()
        time.sleep(4)
        print(json.dumps([began, time.time()]))
else:
    trail = AuditTrail(registry, model, settings=Settings.from_env(), key=sys.argv[5].encode())
    for i in range(6):
        trail.write(event("check-recorded", "production", None, str(i), uri.split(":")[0]))
    print("[]")
"""


def run_both(paths: tuple[str, str], model: str, mode: str, tmp_path) -> list[list[float]]:
    start = time.time() + 25  # both have imported MLflow by then, on a busy machine too
    procs = [subprocess.Popen(
        [sys.executable, "-c", HOLD, uri, model, str(start), mode, KEY], cwd=REPO,
        env=cli_env(MLOPS_HOME=str(tmp_path / f"home-{i}")), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for i, uri in enumerate(paths)]
    out = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in out]
    return [json.loads(o.strip().splitlines()[-1]) for o, _ in out]


def test_http_and_direct_sqlite_clients_hold_the_lock_one_after_the_other(
        mlflow_sqlite_server, tmp_path):
    spans = sorted(run_both(mlflow_sqlite_server, "lock-spans", "hold", tmp_path))
    (_, first_end), (second_start, _) = spans
    assert first_end <= second_start, f"both held the lock at once: {spans}"


def test_audit_writes_through_both_paths_leave_one_whole_chain(mlflow_sqlite_server, tmp_path):
    import mlflow

    from tasks.core import chain

    url, store = mlflow_sqlite_server
    run_both((url, store), "lock-chain", "write", tmp_path)
    client = mlflow.MlflowClient(tracking_uri=url, registry_uri=url)
    audit = client.get_experiment_by_name("audit/lock-chain").experiment_id
    records = [r.data.params for r in client.search_runs([audit], max_results=100)]
    assert sorted(int(r["seq"]) for r in records) == list(range(1, 13))
    assert {r["actor"] for r in records} == {"http", "sqlite"}
    assert chain.problems(records, KEY.encode(), model="lock-chain") == []
