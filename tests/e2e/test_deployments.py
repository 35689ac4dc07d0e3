"""The Prefect way end to end: a real server on PostgreSQL, `prefect deploy --all` from this
repository, the work pools, process workers, `prefect deployment run --watch`, the schedules and
`mlops ci` in a simulated GitLab job, and a worker killed mid-run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import mlflow
import pytest

from tasks.training.synthetic import generate_claims
from tests.conftest import config_yaml, crown
from tests.e2e.conftest import (
    BIN,
    REPO,
    background,
    cli_env,
    descendants,
    local_client,
    mlops,
    paused_run,
)
from tests.fakes.gitlab_api import FakeGitLab

pytestmark = pytest.mark.slow
APPROVERS = "deploy:\n  staging:\n    smoke: {max_latency_ms: 2000}\n  production:\n    approvers: [alice]\n"


def api_post(api: str, path: str, body: dict) -> list | dict:
    req = urllib.request.Request(f"{api}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def api_get(api: str, path: str) -> dict:
    with urllib.request.urlopen(f"{api}{path}", timeout=10) as resp:
        return json.loads(resp.read())


def flow_runs(api: str, **flow_run_filter) -> list[dict]:
    return api_post(api, "/flow_runs/filter", {"flow_runs": flow_run_filter, "limit": 200})


def write_configs(folder: Path, fraud_rows: int = 3000, fraud_trials: int = 2) -> Path:
    """Small versions of the three models (the deployments are the repository's own)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fraud.yaml").write_text(config_yaml(name="fraud", rows=fraud_rows,
                                                   n_trials=fraud_trials, extra=APPROVERS))
    (folder / "damage.yaml").write_text(config_yaml("multiclass", name="damage", rows=3000))
    # an RMSE ceiling no model can meet: the gate rejects settlement
    settlement = config_yaml("regression", name="settlement", rows=3000)
    (folder / "settlement.yaml").write_text(settlement.replace("threshold: 100000",
                                                               "threshold: 1.0"))
    return folder


@pytest.fixture(scope="module")
def stack(prefect_server, tmp_path_factory, request):
    """Pools applied and the repository deployed, as a platform engineer would. A test module
    may set POOL_TYPE (default process) and IMAGE_BUILD (default skip); pools of another type
    that an earlier module left on the shared server are replaced."""
    pool_type = getattr(request.module, "POOL_TYPE", "process")
    root = tmp_path_factory.mktemp("deployments")
    env = cli_env(PREFECT_API_URL=prefect_server, MLOPS_HOME=str(root / "state"),
                  MLOPS_CONFIG_DIR=str(write_configs(root / "configs")),
                  MLOPS_PROJECT_DIR=str(REPO),
                  MLOPS_IMAGE_BUILD=getattr(request.module, "IMAGE_BUILD", "skip"),
                  PREFECT_WORKER_QUERY_SECONDS="2", PREFECT_HOME=str(root / "prefect-home"))
    for pool in ("cpu-runners", "gpu-runners"):
        with contextlib.suppress(urllib.error.HTTPError):
            if api_get(prefect_server, f"/work_pools/{pool}")["type"] != pool_type:
                urllib.request.urlopen(urllib.request.Request(
                    f"{prefect_server}/work_pools/{pool}", method="DELETE"), timeout=10)
    first = mlops(["pools", "apply", "--type", pool_type], env)
    assert first.returncode == 0, first.stderr
    assert f"cpu-runners ({pool_type}, cpu" in first.stdout and "created" in first.stdout
    assert "global concurrency limit gpu (1 slots, one per GPU runner)" in first.stdout
    assert "automation 'crash zombie flow runs'" in first.stdout
    again = mlops(["pools", "apply", "--type", pool_type], env)
    assert "automation 're-run crashed flow runs'" in first.stdout
    # 2 pools, the gpu limit, 2 automations
    assert again.stdout.count("unchanged") == 5, again.stdout
    deploy = subprocess.run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=300)
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
    return {"api": prefect_server, "env": env, "root": root, "deploy": deploy.stdout}


def worker(stack, pool: str, name: str, **env):
    cmd = [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--name", name]
    return background(cmd, stack["root"] / f"{name}.log", env={**stack["env"], **env})


def versions(state: Path, model: str) -> list[str]:
    client = local_client(state)
    return sorted(str(v.version) for v in client.search_model_versions(f"name='{model}'"))


@pytest.fixture(scope="module")
def fraud_home(tmp_path_factory) -> Path:
    """One store for fraud v1, trained by the process worker's deployment run: the expiry and
    drift tests deploy and monitor that version instead of training their own."""
    return tmp_path_factory.mktemp("fraud-home") / "state"


def trained_fraud(env: dict) -> None:
    """fraud v1 in env's MLOPS_HOME: already there when the deployment run test ran first, else
    trained here (a test run alone)."""
    if not versions(Path(env["MLOPS_HOME"]), "fraud"):
        trained = mlops(["train", "fraud"], env)
        assert trained.returncode == 0, trained.stderr


def test_deployments_pools_and_schedules_on_the_server(stack):
    api = stack["api"]
    deps = {d["name"]: d for d in api_post(api, "/deployments/filter", {
        "flows": {"name": {"any_": ["training-pipeline"]}}})}
    assert {"fraud", "damage", "settlement"} <= set(deps)
    for flow, purpose in (("batch-scoring", "score"), ("monitoring", "monitor")):
        daily = api_post(api, "/deployments/filter", {"flows": {"name": {"any_": [flow]}}})
        assert sorted(d["name"] for d in daily) == [f"{purpose}-{m}" for m in
                                                    ("damage", "fraud", "settlement")]
        assert all(d["schedules"][0]["schedule"]["cron"].endswith("* * *") for d in daily)
    assert deps["damage"]["work_pool_name"] == "gpu-runners"
    assert deps["fraud"]["work_pool_name"] == "cpu-runners"
    fraud = deps["fraud"]
    assert fraud["parameters"] == {"model": "fraud", "deploy": True, "as_of": None}
    # the custom-run form: every parameter described, model a choice of the configured models
    form = fraud["parameter_openapi_schema"]["properties"]
    assert all(p.get("description") for p in form.values()), form
    assert {"fraud", "damage", "settlement"} <= set(form["model"]["enum"])
    assert fraud["pull_steps"] == [{"deployments.steps.enter_project": {}}]
    assert fraud["job_variables"]["image"].startswith("prefect-mlops-train:")
    [weekly] = fraud["schedules"]
    assert weekly["schedule"]["cron"] == "0 2 * * 1" and weekly["schedule"]["timezone"] == "UTC"
    assert weekly["slug"] == "weekly-retrain" and weekly["active"]
    gpu = api_get(api, "/work_pools/gpu-runners")
    assert gpu["base_job_template"]["variables"]["properties"]["env"]["default"] == {
        "MLOPS_DEVICE": "cuda", "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}
    # limits: promotions queue, a drift storm starts one retrain (issue 22)
    deploy = api_post(api, "/deployments/filter", {"deployments": {"name": {"any_": [
        "deploy-fraud", "retrain-fraud"]}}})
    limits = {d["name"]: (d["global_concurrency_limit"]["limit"],
                          d["concurrency_options"]["collision_strategy"]) for d in deploy}
    assert limits == {"deploy-fraud": (1, "ENQUEUE"), "retrain-fraud": (1, "CANCEL_NEW")}

    listed = mlops(["schedules"], stack["env"])
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()
            if line.lstrip().startswith("training-")]
    assert len(rows) == 3
    for row in rows:
        assert row[1:8] == ["weekly-retrain", "0", "2", "*", "*", "1", "UTC"], row
        next_run = datetime.strptime(f"{row[9]} {row[10]}", "%Y-%m-%d %H:%M")
        assert next_run.weekday() == 0 and (next_run.hour, next_run.minute) == (2, 0)


def test_deployment_run_watch_completes_on_a_process_worker(stack, fraud_home):
    api = stack["api"]
    env = {**stack["env"], "MLOPS_HOME": str(fraud_home)}
    with worker(stack, "cpu-runners", "cpu-1", MLOPS_HOME=env["MLOPS_HOME"]):
        started = time.perf_counter()
        run = subprocess.run([str(BIN / "prefect"), "deployment", "run", "training-pipeline/fraud",
                              "--param", "deploy=false", "--watch", "--watch-timeout", "400"],
                             env=env, capture_output=True, text=True, timeout=450)
        wall = time.perf_counter() - started
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "Completed" in run.stdout
    [done] = [r for r in flow_runs(api, state={"type": {"any_": ["COMPLETED"]}})
              if r["parameters"].get("deploy") is False and r["parameters"]["model"] == "fraud"]
    created = datetime.fromisoformat(done["created"])
    running = datetime.fromisoformat(done["start_time"])
    print(f"\ndeployment run -> Running: {(running - created).total_seconds():.1f}s "
          f"(worker polls every 2 s here); whole run {wall:.1f}s")
    assert versions(Path(env["MLOPS_HOME"]), "fraud") == ["1"]


def test_an_approval_nobody_answers_in_time_is_recorded_by_the_expiry_trigger(stack, fraud_home,
                                                                                tmp_path):
    """The suspended deploy run is failed by the server at its deadline, with no process left to
    say so; the prefect.yaml trigger starts approval-expiry/record, which writes the record."""
    api = stack["api"]
    configs = tmp_path / "configs"
    configs.mkdir()
    hurry = APPROVERS.replace("approvers: [alice]", "approvers: [alice]\n    "
                              "approval_timeout_h: 0.002")  # about 7 s
    (configs / "fraud.yaml").write_text(config_yaml(name="fraud", rows=3000, extra=hurry))
    env = {**stack["env"], "MLOPS_HOME": str(fraud_home), "MLOPS_CONFIG_DIR": str(configs)}
    trained_fraud(env)  # v1, never promoted
    [record] = [d for d in api_post(api, "/deployments/filter", {
        "flows": {"name": {"any_": ["approval-expiry"]}}}) if d["name"] == "record"]
    with worker(stack, "cpu-runners", "cpu-expiry", **env):
        made = subprocess.run([str(BIN / "prefect"), "deployment", "run", "deploy/deploy-fraud",
                               "--params", '{"version": "1"}'], env=env, capture_output=True,
                              text=True, timeout=120)
        assert made.returncode == 0, made.stderr
        run_id = made.stdout.split("UUID:")[1].split()[0]
        deadline, recorded = time.monotonic() + 300, None
        while time.monotonic() < deadline and recorded is None:  # the trigger's run, ended
            recorded = next((r for r in flow_runs(api, deployment_id={"any_": [record["id"]]})
                             if r["parameters"]["flow_run_id"].endswith(run_id)
                             and r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")), None)
            time.sleep(1)
    assert recorded is not None, (stack["root"] / "cpu-expiry.log").read_text()[-3000:]
    assert recorded["state_type"] == "COMPLETED", recorded["state"]
    trail = mlops(["history", "fraud"], env)
    assert "approval-timeout" in trail.stdout, trail.stdout[-2000:] + trail.stderr[-2000:]
    failed = api_get(api, f"/flow_runs/{run_id}")
    assert failed["state"]["type"] == "FAILED" and "never resumed" in failed["state"]["message"]
    assert "awaiting-approval" not in failed["tags"]
    assert versions(fraud_home, "fraud") == ["1"]
    client = local_client(fraud_home)
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias("fraud", "champion")


def test_drift_event_starts_a_retrain_through_the_deployment_trigger(stack, fraud_home):
    """monitor → mlops.model.drift-detected → the prefect.yaml trigger → a
    training-pipeline/retrain-fraud run (its own deployment, so its limit of one never cancels
    CI or weekly training), created by the server's automation (no worker needed to see it)."""
    api, env, root = stack["api"], stack["env"], stack["root"]
    fraud = [d for d in api_post(api, "/deployments/filter", {
        "flows": {"name": {"any_": ["training-pipeline"]}}}) if d["name"] == "retrain-fraud"][0]
    env = {**env, "MLOPS_HOME": str(fraud_home)}
    trained_fraud(env)  # v1 of the deployment run test, its approval expired
    from tasks.adapters.registries import open_registry
    from tasks.core.settings import Settings

    found = Settings.from_env(env)  # promoted as the pipeline would: alias and record
    crown(open_registry(found), "fraud", "1", key=found.resolve_audit_key())
    for name, drift in (("fresh", 0.0), ("drifted", 1.0)):  # scoring inputs carry no labels
        generate_claims(3000, seed=77, drift=drift).drop(
            columns=["is_fraud", "damage_severity", "settlement_amount"]).to_parquet(
            root / f"{name}.parquet")
    before = {r["id"] for r in flow_runs(api, deployment_id={"any_": [fraud["id"]]})}

    calm = mlops(["monitor", "fraud", "--input", str(root / "fresh.parquet")], env)
    assert calm.returncode == 0, calm.stdout[-2000:] + calm.stderr[-2000:]
    flagged = mlops(["monitor", "fraud", "--input", str(root / "drifted.parquet")], env)
    assert flagged.returncode == 4, flagged.stdout[-2000:] + flagged.stderr[-2000:]
    assert "DRIFT" in flagged.stdout

    deadline, started = time.monotonic() + 90, []
    while not started and time.monotonic() < deadline:
        started = [r for r in flow_runs(api, deployment_id={"any_": [fraud["id"]]})
                   if r["id"] not in before]
        time.sleep(1)
    assert len(started) == 1, "the drift event started no (or several) training runs"
    [run] = started
    assert run["parameters"]["model"] == "fraud"
    assert (run.get("created_by") or {}).get("type") == "AUTOMATION", run.get("created_by")
    deadline, events = time.monotonic() + 30, []
    while not events and time.monotonic() < deadline:  # the server stores events in batches
        events = api_post(api, "/events/filter", {"filter": {
            "event": {"name": ["mlops.model.drift-detected"]},
            "resource": {"id": ["mlops.model.fraud"]}}})["events"]
        time.sleep(1)
    assert len(events) == 1 and "days_to_report" in events[0]["payload"]["drifted"]
    # no worker serves it here; cancel it so later tests' workers do not pick it up
    api_post(api, f"/flow_runs/{run['id']}/set_state",
             {"state": {"type": "CANCELLED", "name": "Cancelled"}, "force": True})


# newer GitLab only: both behaviours of model-versions/create go through the whole pipeline in
# test_gitlab_mlflow.py; this test is about CI, approval and the runner (about 90 s a run)
@pytest.mark.parametrize("gitlab_mlflow", ["newer"], indirect=True)
def test_ci_trigger_is_idempotent_and_approval_holds_no_runner(stack, gitlab_mlflow):
    """A merge request pipeline with GitLab's MLflow API as the tracking server (newer
    GitLab): `mlops ci` starts the run and ends once its deploy run waits for approval; that run
    waits suspended (its process gone, nothing held); the answer resumes it in a new process
    that promotes. GitLab gets one model report comment and a deployment per environment change,
    and every MLflow call passes GitLab's routes and rules."""
    api, fake = stack["api"], gitlab_mlflow
    fake.ml.jobs.add("31337")  # the job of this pipeline, on the same GitLab
    pipeline = {"older": "9001", "newer": "9011"}[fake.mode]
    gitlab = FakeGitLab().start()
    mr = {"CI_SERVER_URL": gitlab.url, "CI_PROJECT_ID": "42", "CI_MERGE_REQUEST_IID": "5",
          "CI_COMMIT_REF_NAME": "main", "CI_COMMIT_SHA": "a" * 40, "CI_JOB_ID": "31337",
          "CI_PROJECT_URL": "https://gitlab.example.com/claims/models"}
    env = {**stack["env"], **mr, "CI_COMMIT_MESSAGE": "train fraud\n\nretrain after the data fix",
           "CI_PIPELINE_ID": pipeline, "MLFLOW_TRACKING_URI": fake.url,
           "MLFLOW_TRACKING_TOKEN": fake.token}
    # the runner holds only the tokens; the MR's identity comes with the flow run (job variables)
    with worker(stack, "cpu-runners", "cpu-2", MLOPS_GITLAB_TOKEN="glpat-good",
                MLFLOW_TRACKING_URI=fake.url, MLFLOW_TRACKING_TOKEN=fake.token):
        ci = mlops(["ci"], env)
        assert ci.returncode == 0, ci.stdout[-3000:] + ci.stderr[-2000:]
        assert "training-pipeline/fraud: run" in ci.stdout and "started" in ci.stdout
        assert "waits for approval (no job is held)" in ci.stdout
        run_id = paused_run(api, "fraud")
        waiting = api_get(api, f"/flow_runs/{run_id}")
        assert waiting["state"]["name"] == "Suspended" and waiting["name"] == "deploy-fraud-v1.0.0"
        assert "awaiting-approval" in waiting["tags"]
        assert f"gitlab-pipeline:{pipeline}" in waiting["tags"]
        answer = mlops(["approve", "fraud", "--as", "alice", "--comment", "ci e2e"], env)
        assert answer.returncode == 0, answer.stderr
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            state = api_get(api, f"/flow_runs/{run_id}")["state"]
            if state["type"] in ("COMPLETED", "FAILED", "CRASHED"):
                break
            time.sleep(1)
        assert state["type"] == "COMPLETED", (stack["root"] / "cpu-2.log").read_text()[-3000:]
        retried = mlops(["ci"], env)  # the same pipeline's job, retried
    assert retried.returncode == 0, retried.stderr
    assert "already started by this pipeline" in retried.stdout
    key = f"gitlab-pipeline-{pipeline}-training-pipeline/fraud"
    assert len([r for r in flow_runs(api) if r["idempotency_key"] == key]) == 1
    assert [v.version for v in fake.ml.versions] == ["1.0.0"]  # same data, config, code
    [trained] = [c for c in fake.runs_of("[model]fraud") if "run_key" in c.metadata]
    assert trained.ci_build == "31337"  # the run links to the CI job
    assert {"model.tar.gz", "model_card.md"} <= fake.version_files("fraud", "1.0.0")
    verify = mlops(["audit", "verify", "fraud"], env)
    assert verify.returncode == 0, verify.stderr
    assert "@champion v1.0.0, @staging v1.0.0 as recorded" in verify.stdout
    assert fake.refused == [] and fake.dropped == []
    assert not [c for c in fake.calls if c[2] in (400, 401, 403) or c[2] >= 500]
    assert any(path.endswith("/model-versions/create") for _, path, _ in fake.calls)
    gitlab.stop()
    [note] = gitlab.notes["5"]
    assert "model-report:fraud" in note["body"] and "gate ✅ passed" in note["body"]
    assert "/runs/flow-run/" in note["body"]  # linked to the Prefect flow run
    assert "https://gitlab.example.com/claims/models/-/ml/experiments/" in note["body"]
    assert [(d["environment"]["name"], d["status"], d["sha"]) for d in gitlab.deployments] == [
        ("staging", "success", "a" * 40), ("production", "success", "a" * 40)]
    bypass = subprocess.run([str(BIN / "prefect"), "deployment", "run", "training-pipeline/fraud",
                             "--param", "approve_as=mallory"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert bypass.returncode != 0  # no parameter approves on a server


def test_ci_bad_message_starts_nothing(stack):
    def started() -> int:  # runs someone started: the scheduler adds the crons' future runs
        return len([r for r in flow_runs(stack["api"]) if not r.get("auto_scheduled")])

    before = started()
    env = {**stack["env"], "CI_COMMIT_MESSAGE": "train fraud nosuch", "CI_PIPELINE_ID": "9002"}
    result = mlops(["ci"], env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: commit message names unknown model(s) nosuch (known: damage, fraud, settlement); "
        "no run started"]
    assert started() == before


def test_ci_fails_on_gate_rejection_and_on_a_gpu_pool_without_gpu(stack):
    env = {**stack["env"], "CI_PIPELINE_ID": "9003"}
    with worker(stack, "cpu-runners", "cpu-3"), worker(stack, "gpu-runners", "gpu-1"):
        gate = mlops(["ci"], {**env, "CI_COMMIT_MESSAGE": "train settlement"})
        gpu = mlops(["ci"], {**env, "CI_COMMIT_MESSAGE": "train damage"})
    assert gate.returncode == 3, gate.stdout[-2000:]
    assert "gate rejected" in gate.stdout.lower() or "GateRejected" in gate.stdout
    assert gpu.returncode == 1, gpu.stdout[-2000:]
    assert "MLOPS_DEVICE=cuda but no CUDA device" in gpu.stdout


def test_worker_killed_mid_run_crashes_and_rerun_registers_once(stack, tmp_path):
    """A runner lost mid-training: the worker is killed outright, its flow run terminated; the
    re-run automation runs it again once, on another worker, and it registers one version."""
    api = stack["api"]
    # slow enough to be killed mid-training (at trial 2); the rescuer's runner has the small
    # configs of the stack, so the re-run trains in seconds
    slow = write_configs(tmp_path / "configs", fraud_rows=20000, fraud_trials=12)
    env = {**stack["env"], "MLOPS_HOME": str(tmp_path / "state"), "MLOPS_CONFIG_DIR": str(slow)}
    with worker(stack, "cpu-runners", "doomed", **env) as doomed:
        made = subprocess.run([str(BIN / "prefect"), "deployment", "run",
                               "training-pipeline/fraud", "--param", "deploy=false"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert made.returncode == 0, made.stderr
        run_id = made.stdout.split("UUID:")[1].split()[0]
        log = stack["root"] / "doomed.log"
        deadline = time.monotonic() + 240
        while "trial 2/" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "trial 2/" in log.read_text(), log.read_text()[-2000:]
        flow_processes = descendants(doomed.pid)
        assert flow_processes
        # the runner is lost: its job's processes are stopped (SIGTERM, as stopping a container
        # does) and the worker dies outright. The flow processes go first: Prefect 3.8's engine
        # hands its final state to a live worker over the control session, and a run whose
        # worker died before it stays Running with no process left (a zombie run)
        for pid in flow_processes:
            os.kill(pid, signal.SIGTERM)
        gone = time.monotonic() + 60
        while any(os.path.exists(f"/proc/{pid}") for pid in flow_processes) and \
                time.monotonic() < gone:
            time.sleep(0.2)
        os.kill(doomed.pid, signal.SIGKILL)
        deadline = time.monotonic() + 180  # a loaded machine takes its time to report it
        while time.monotonic() < deadline:
            state = api_get(api, f"/flow_runs/{run_id}")["state"]["type"]
            if state in ("CRASHED", "FAILED"):
                break
            time.sleep(1)
    alive = [pid for pid in flow_processes if os.path.exists(f"/proc/{pid}")]
    assert state == "CRASHED", (state, f"still alive: {alive}", log.read_text()[-2000:])
    assert versions(tmp_path / "state", "fraud") == []

    # `mlops pools apply` made the re-run automation: the crashed run is scheduled again once
    # (limits.rerun_after_seconds later) and a new worker trains it; one version, no second run
    with worker(stack, "cpu-runners", "rescuer",
                **{**env, "MLOPS_CONFIG_DIR": stack["env"]["MLOPS_CONFIG_DIR"]}):
        deadline = time.monotonic() + 450
        while time.monotonic() < deadline:
            state = api_get(api, f"/flow_runs/{run_id}")["state"]["type"]
            if state in ("COMPLETED", "FAILED", "CANCELLED"):
                break
            time.sleep(2)
    assert state == "COMPLETED", (state, (stack["root"] / "rescuer.log").read_text()[-2000:])
    history = [s["name"] for s in api_get(api, f"/flow_run_states/?flow_run_id={run_id}")]
    assert history.count("Crashed") == history.count("AwaitingRetry") == 1, history
    assert versions(tmp_path / "state", "fraud") == ["1"]
