"""Running on GitLab the way the product promises: a real Prefect server on PostgreSQL, `mlops pools
apply --type gitlab-ci`, `prefect deploy --all` on a machine without Docker, one `gitlab-ci` worker
next to the server, and the fake GitLab whose simulated runner runs this repository's `flow-run`
job. A deployment run and a schedule both execute as GitLab jobs with the pool's tag; no worker
job and no GitLab schedule exist; a job canceled in GitLab mid-training registers nothing and the
re-run registers exactly one version; a training run with `training.workers: 3` tunes one study in
three more jobs, survives losing one of their runners mid-trial and registers one version."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from deployments.image import _exists
from tests.e2e import test_deployments
from tests.e2e.conftest import BIN, REPO, background, local_client, postgres_database
from tests.e2e.test_deployments import api_get, api_post, flow_runs, versions, write_configs
from tests.e2e.test_tuning_workers import _running_on
from tests.fakes.gitlab_api import FakeGitLab

pytestmark = pytest.mark.slow
POOL_TYPE = "gitlab-ci"
IMAGE_BUILD = "auto"  # this machine has no Docker engine: the build step says so and goes on
TAG = "saas-linux-medium-amd64"
stack = test_deployments.stack  # the platform engineer's setup, with the pool type above


@pytest.fixture(scope="module")
def gitlab(stack):
    """The fake GitLab (its runner has the training dependencies and the CI/CD variables a
    project would set) and one gitlab-ci worker for cpu-runners, which reads its pipelines every
    POLL_S seconds (the pool's poll_interval_s, 10 s as applied)."""
    root = stack["root"]
    pool = api_get(stack["api"], "/work_pools/cpu-runners")["base_job_template"]
    _set_template(stack["api"], pool, poll_interval_s=POLL_S)
    fake = FakeGitLab(tokens={"glpat-worker": ["api"], "glpat-read": ["read_api"]}).start()
    runner = {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HOME": str(root),
              "LANG": "C.UTF-8", "MLOPS_HOME": str(root / "runner-state"),
              "MLOPS_CONFIG_DIR": str(write_configs(root / "runner-configs")),
              "PREFECT_HOME": str(root / "runner-prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    ci = fake.enable_ci(REPO / ".gitlab-ci.yml", runner, root)
    env = {**stack["env"], "CI_SERVER_URL": fake.url, "CI_PROJECT_ID": "42",
           "MLOPS_GITLAB_TOKEN": "glpat-worker"}
    cmd = [str(BIN / "prefect"), "worker", "start", "--pool", "cpu-runners", "--name", "gl-cpu"]
    with background(cmd, root / "gl-cpu.log", env=env) as proc:
        yield {"fake": fake, "ci": ci, "env": env, "worker": proc, "state": root / "runner-state"}
    fake.stop()
    _set_template(stack["api"], pool)  # as `mlops pools apply` left it


POLL_S = 2


def _set_template(api: str, template: dict, **defaults) -> None:
    """PATCH cpu-runners' base job template, with `defaults` for some of its variables."""
    changed = json.loads(json.dumps(template))
    for name, value in defaults.items():
        changed["variables"]["properties"][name]["default"] = value
    urllib.request.urlopen(urllib.request.Request(
        f"{api}/work_pools/cpu-runners", data=json.dumps({"base_job_template": changed}).encode(),
        headers={"Content-Type": "application/json"}, method="PATCH"), timeout=10)


def _pipeline_of(ci, run_id: str) -> dict | None:
    return next((p for p in list(ci.pipelines.values())
                 if p["_pipeline_variables"].get("PREFECT__FLOW_RUN_ID") == run_id), None)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
    return found


def test_setup_needs_no_docker_engine_and_makes_gitlab_ci_pools(stack):
    gpu = api_get(stack["api"], "/work_pools/gpu-runners")
    assert gpu["type"] == "gitlab-ci"
    props = gpu["base_job_template"]["variables"]["properties"]
    assert props["runner_tag"]["default"] == "saas-linux-medium-amd64-gpu-standard"
    if _exists("prefect-mlops-train:probe") == "no-engine":
        assert "build skipped (no Docker engine here; process and gitlab-ci pools need none" \
            in stack["deploy"]
        assert "Traceback" not in stack["deploy"] and "DockerException" not in stack["deploy"]


def test_deployment_run_executes_as_a_gitlab_job(stack, gitlab, tmp_path):
    """A job canceled in GitLab mid-training crashes its run and registers nothing; the same
    deployment run by hand (`--watch`) then completes through a pipeline and registers one
    version."""
    ci, env = gitlab["ci"], gitlab["env"]
    small = ci.runner_env["MLOPS_CONFIG_DIR"]
    # long enough to be canceled mid-training (at trial 2); the re-run trains the small configs
    ci.runner_env["MLOPS_CONFIG_DIR"] = str(write_configs(tmp_path / "slow", fraud_trials=25))
    try:
        made = subprocess.run([str(BIN / "prefect"), "deployment", "run",
                               "training-pipeline/fraud", "--param", "deploy=false"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert made.returncode == 0, made.stderr
        doomed = made.stdout.split("UUID:")[1].split()[0]
        pipeline = _wait(lambda: _pipeline_of(ci, doomed), 120, "the pipeline")
        [job] = pipeline["_jobs"]
        _wait(lambda: job["id"] in ci.logs and "trial 2/" in ci.logs[job["id"]].read_text(), 240,
              "training in the job")
    finally:
        ci.runner_env["MLOPS_CONFIG_DIR"] = small
    ci.cancel(pipeline["id"])  # someone presses Cancel in GitLab
    _wait(lambda: api_get(stack["api"], f"/flow_runs/{doomed}")["state"]["type"] in (
        "CRASHED", "CANCELLED"), 90, "the run to end")
    assert versions(gitlab["state"], "fraud") == []

    worker_cpu = _cpu_seconds(gitlab["worker"].pid)
    requests = len(gitlab["fake"].requests)
    started = time.perf_counter()
    run = subprocess.run([str(BIN / "prefect"), "deployment", "run", "training-pipeline/fraud",
                          "--param", "deploy=false", "--watch", "--watch-timeout", "400"],
                         env=env, capture_output=True, text=True, timeout=450)
    wall = time.perf_counter() - started
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert versions(gitlab["state"], "fraud") == ["1"]  # the canceled run left nothing behind
    run_id = run.stdout.split("UUID:")[1].split()[0]
    done = api_get(stack["api"], f"/flow_runs/{run_id}")
    pipeline = _pipeline_of(ci, run_id)
    _wait(lambda: pipeline["status"] == "success", 60, "the job to exit")
    [job] = pipeline["_jobs"]  # the flow-run job alone, on the pool's runners
    assert (job["name"], job["status"], job["tag_list"]) == ("flow-run", "success", [TAG])
    assert done["state"]["type"] == "COMPLETED"
    assert done["infrastructure_pid"] == f"gitlab:42:{pipeline['id']}"
    assert done["labels"]["gitlab.job.url"] == job["web_url"]
    # the worker follows a pipeline until it reads it final (it may have done so already: no
    # further read is due once the run completed)
    _wait(lambda: (pipeline["id"], "success") in ci.reads, 60, "the worker to read the end")
    created = datetime.fromisoformat(done["created"])
    print(f"\ndeployment run -> flow Running: "
          f"{(datetime.fromisoformat(done['start_time']) - created).total_seconds():.1f}s "
          f"(pipeline created after "
          f"{(datetime.fromisoformat(pipeline['created_at']) - created).total_seconds():.1f}s, "
          f"job started after "
          f"{(datetime.fromisoformat(job['started_at']) - created).total_seconds():.1f}s); "
          f"whole run {wall:.1f}s; worker CPU {_cpu_seconds(gitlab['worker'].pid) - worker_cpu:.2f}s"
          f", GitLab requests {len(gitlab['fake'].requests) - requests} for this run")


def test_a_schedule_runs_on_gitlab_with_no_gitlab_schedule_and_no_worker_job(stack, gitlab):
    api, ci = stack["api"], gitlab["ci"]
    [fraud] = [d for d in api_post(api, "/deployments/filter", {
        "flows": {"name": {"any_": ["training-pipeline"]}}}) if d["name"] == "fraud"]
    now = datetime.now(UTC)
    [schedule] = api_post(api, f"/deployments/{fraud['id']}/schedules", [{
        "schedule": {"interval": 86400, "anchor_date": (now + timedelta(seconds=5)).isoformat(),
                     "timezone": "UTC"},
        "active": True, "parameters": {"deploy": False}, "slug": "e2e-in-a-few-seconds"}])
    try:
        api_post(api, f"/deployments/{fraud['id']}/schedule", {
            "start_time": now.isoformat(), "end_time": (now + timedelta(minutes=1)).isoformat()})
        [due] = [r for r in flow_runs(api, deployment_id={"any_": [fraud["id"]]},
                                      state={"type": {"any_": ["SCHEDULED"]}})
                 if r["auto_scheduled"] and r["parameters"].get("deploy") is False]
        _wait(lambda: api_get(api, f"/flow_runs/{due['id']}")["state"]["type"] in (
            "COMPLETED", "FAILED", "CRASHED"), 300, "the scheduled run")
    finally:
        urllib.request.urlopen(urllib.request.Request(
            f"{api}/deployments/{fraud['id']}/schedules/{schedule['id']}", method="DELETE"),
            timeout=10)
    ran = api_get(api, f"/flow_runs/{due['id']}")
    assert ran["state"]["type"] == "COMPLETED", ran["state"]
    pipeline = _pipeline_of(ci, due["id"])
    assert [j["name"] for j in pipeline["_jobs"]] == ["flow-run"]
    assert gitlab["fake"].schedules == []  # nothing in GitLab but the runners
    assert {j["name"] for p in ci.pipelines.values() for j in p["_jobs"]} == {"flow-run"}


def test_worker_start_with_a_read_only_token_is_one_error_line(stack, gitlab):
    env = {**gitlab["env"], "MLOPS_GITLAB_TOKEN": "glpat-read"}
    started = subprocess.run([str(BIN / "prefect"), "worker", "start", "--pool", "cpu-runners"],
                             env=env, capture_output=True, text=True, timeout=120)
    assert started.returncode == 1
    assert "Traceback" not in started.stderr + started.stdout
    assert started.stderr.strip().splitlines()[-1] == (
        "error: gitlab-ci worker: the GitLab token has scopes read_api: the gitlab-ci worker "
        "needs the api scope to create and cancel pipelines")


HPO_TRIALS = 9


def _lose_runner_mid_trial(ci, job: dict, study: optuna.Study) -> optuna.trial.FrozenTrial:
    """Lose worker 1's runner while one of its trials runs: no tell, no heartbeat, no final
    state. The job is frozen first and its trial read again, so a trial that finished between
    the look and the kill (short trials on a fast machine) is not taken for a lost one."""
    while True:
        trial = _wait(lambda: _running_on(study, 1), 300, "a trial on worker 1")
        ci.freeze(job["id"])
        still = _running_on(study, 1)  # read again, the job frozen
        if still is not None and still.number == trial.number:
            ci.lose_runner(job["id"])
            return trial
        ci.freeze(job["id"], frozen=False)
LIVE = ["RUNNING", "PENDING", "SCHEDULED", "CANCELLING"]


@pytest.mark.timeout(600)
def test_one_study_tuned_by_three_gitlab_jobs_survives_a_lost_runner(stack, gitlab, tmp_path):
    """`training.workers: 3`: the training job starts three hpo-worker runs, each its own GitLab
    job beside it; the runner of worker 1 is lost mid-trial (its processes SIGKILLed, the job
    failed with runner_system_failure). The gitlab-ci worker crashes that run, its trial is
    retried by another worker, and the study ends at n_trials with one registered version."""
    api, ci = stack["api"], gitlab["ci"]
    configs = write_configs(tmp_path / "configs", fraud_trials=HPO_TRIALS)
    fraud = (configs / "fraud.yaml").read_text()
    (configs / "fraud.yaml").write_text(fraud.replace("max_rounds: 60}",
                                                      "max_rounds: 60, workers: 3}"))
    state = tmp_path / "state"  # a registry of its own: the other tests' fraud versions aside
    saved = dict(ci.runner_env)
    started = time.perf_counter()
    with postgres_database("hpo22e") as uri:
        url = uri.replace("postgresql://", "postgresql+psycopg://")
        ci.runner_env.update(MLOPS_CONFIG_DIR=str(configs), MLOPS_HOME=str(state),
                             MLOPS_OPTUNA_STORAGE=url)
        try:
            made = subprocess.run([str(BIN / "prefect"), "deployment", "run",
                                   "training-pipeline/fraud", "--param", "deploy=false"],
                                  env=gitlab["env"], capture_output=True, text=True, timeout=120)
            assert made.returncode == 0, made.stderr
            parent = made.stdout.split("UUID:")[1].split()[0]
            mine = {"all_": [f"training-run:{parent}"]}
            try:
                workers = _wait(lambda: (found := flow_runs(api, tags=mine)) and len(found) == 3
                                and found, 240, "three hpo-worker runs")
            except AssertionError as exc:  # seen once in a full run: say where the parent was
                parent_state = api_get(api, f"/flow_runs/{parent}")["state"]
                raise AssertionError(f"{exc}; the training run: {parent_state}; its worker runs "
                                     f"so far: {flow_runs(api, tags=mine)}") from None
            by_worker = {r["parameters"]["worker"]: r["id"] for r in workers}
            [study_name] = _wait(lambda: optuna.get_all_study_names(url), 60, "the study")
            study = optuna.load_study(study_name=study_name, storage=url)
            _wait(lambda: _running_on(study, 1), 300, "a trial on worker 1")
            [job] = _pipeline_of(ci, by_worker[1])["_jobs"]
            killed = _lose_runner_mid_trial(ci, job, study)
            lost_at = time.perf_counter()
            _wait(lambda: api_get(api, f"/flow_runs/{parent}")["state"]["type"] in (
                "COMPLETED", "FAILED", "CRASHED", "CANCELLED"), 480, "the training run")
            wall, recovered = time.perf_counter() - started, time.perf_counter() - lost_at
            done = api_get(api, f"/flow_runs/{parent}")
            live = flow_runs(api, id={"any_": [parent, *by_worker.values()]},
                             state={"type": {"any_": LIVE}})
            trials, best = study.get_trials(), study.best_params
        finally:
            ci.runner_env.clear()
            ci.runner_env.update(saved)
    assert done["state"]["type"] == "COMPLETED", done["state"]
    assert live == []  # every worker run final when the parent is
    states = {w: api_get(api, f"/flow_runs/{r}")["state"] for w, r in by_worker.items()}
    assert states[1]["type"] == "CRASHED", states[1]  # the gitlab-ci worker read the failed job
    assert f"(runner_system_failure): {job['web_url']}" in states[1]["message"]
    assert (job["status"], job["failure_reason"]) == ("failed", "runner_system_failure")
    assert states[0]["type"] == states[2]["type"] == "COMPLETED"

    counts = {s: sum(t.state == s for t in trials) for s in TrialState}
    assert counts[TrialState.COMPLETE] + counts[TrialState.PRUNED] == HPO_TRIALS, counts
    assert counts[TrialState.FAIL] == 1 and counts[TrialState.RUNNING] == 0, counts
    [failed] = [t for t in trials if t.state == TrialState.FAIL]
    assert failed.number == killed.number  # the trial that was running when the runner went
    [retried] = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retried.state in (TrialState.COMPLETE, TrialState.PRUNED)
    # the retry is enqueued with what the lost trial had suggested (all of it, or only the first
    # parameters when the runner went mid-suggestion); the rest is sampled anew
    assert retried.user_attrs["worker"] in (0, 2)
    assert failed.params.items() <= retried.params.items(), (failed.params, retried.params)

    client = local_client(state)
    [version] = client.search_model_versions("name='fraud'")
    tags = version.tags
    assert (tags["tuning_study"], tags["tuning_workers"]) == (study_name, "3")
    assert tags["tuning_failed_trials"] == "1"
    assert json.loads(tags["tuning_params"]) == best

    jobs = {w: _pipeline_of(ci, r)["_jobs"][0] for w, r in by_worker.items()}
    parent_job = _pipeline_of(ci, parent)["_jobs"][0]
    _wait(lambda: parent_job["finished_at"], 60, "the training job to exit")
    assert all(j["started_at"] < parent_job["finished_at"] for j in jobs.values())  # side by side
    print(f"\nthree GitLab jobs tuned {study_name}: training run {wall:.0f}s, "
          f"{recovered:.0f}s after the lost runner "
          f"(trial {killed.number} retried as {retried.number} by worker "
          f"{retried.user_attrs['worker']}); trials {counts[TrialState.COMPLETE]} complete, "
          f"{counts[TrialState.PRUNED]} pruned; load {os.getloadavg()[0]:.1f}")
