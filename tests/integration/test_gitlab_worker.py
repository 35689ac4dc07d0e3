"""The gitlab-ci worker against the fake GitLab, whose simulated runner runs the `flow-run` job of
this repository's .gitlab-ci.yml: one pipeline per run with its own run id, a failed or canceled
job crashing the run with the job's URL, cancellation in Prefect canceling the pipeline, a token
without the api scope refused at start, an unreachable GitLab crashing the run after bounded
retries with no pipeline left behind."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

import anyio
import pytest
from prefect.client.orchestration import get_client
from prefect.states import Cancelling

from deployments.gitlab_worker import GitLabCIWorker
from tests.fakes.gitlab_api import FakeGitLab

# whole training or deploy flows per test: `make test` runs this module, the quick subset
# (`make test-fast`) leaves it out (docs/testing.md)
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TAG = "saas-linux-medium-amd64"


@pytest.fixture
def gitlab(tmp_path, monkeypatch):
    fake = FakeGitLab(tokens={"glpat-good": ["api"], "glpat-read": ["read_api"]}).start()
    runner = {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path),
              "MLOPS_HOME": str(tmp_path / "state"), "PREFECT_HOME": str(tmp_path / "ph"),
              "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    fake.enable_ci(REPO / ".gitlab-ci.yml", runner, tmp_path)
    for key, value in {"CI_SERVER_URL": fake.url, "CI_PROJECT_ID": "42",
                       "MLOPS_GITLAB_TOKEN": "glpat-good", "MLOPS_GITLAB_MAX_WAIT_S": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLOPS_GITLAB_TOKEN_BLOCK", raising=False)
    yield fake
    fake.stop()


async def _deployment(**job_variables) -> tuple[str, str]:
    """A gitlab-ci pool (the worker's own template, fast polling) and a deployment of the probe
    flow that runs from the checkout through the project's pull step."""
    from prefect.client.schemas.actions import WorkPoolCreate

    pool = f"gl-{uuid.uuid4().hex[:8]}"
    template = GitLabCIWorker.get_default_base_job_template()
    props = template["variables"]["properties"]
    props["runner_tag"]["default"], props["poll_interval_s"]["default"] = TAG, 0.5
    props["image"]["default"] = "registry.example/claims/train:abc123"
    async with get_client() as client:
        await client.create_work_pool(WorkPoolCreate(name=pool, type="gitlab-ci",
                                                     base_job_template=template))
        flow_id = await client.create_flow_from_name("worker-probe")
        deployment = await client.create_deployment(
            flow_id=flow_id, name=pool, work_pool_name=pool, job_variables=job_variables,
            entrypoint="tests/integration/worker_flows.py:probe",
            pull_steps=[{"deployments.steps.enter_project": {}}])
    return pool, str(deployment)


async def _runs(deployment: str, *seconds: float) -> list:
    async with get_client() as client:
        return [await client.create_flow_run_from_deployment(uuid.UUID(deployment),
                                                             parameters={"seconds": s})
                for s in seconds]


async def _read(run_id):
    async with get_client() as client:
        return await client.read_flow_run(run_id)


async def _serve(pool: str, during=None, limit_s: float = 150):
    """Submit the pool's due runs and follow them to the end (what `prefect worker start`
    does each poll); `during(worker)` runs beside them."""
    with anyio.fail_after(limit_s):
        async with GitLabCIWorker(work_pool_name=pool, prefetch_seconds=30) as worker:
            await worker.get_and_submit_flow_runs()
            if during is not None:
                await during(worker)


async def _until(check, timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while not (found := await check()):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.3)
    return found


async def _until_running(run_id, timeout_s: float = 90):
    async def running():
        return (await _read(run_id)).state.type.value == "RUNNING"

    await _until(running, timeout_s)


def _one_run(seconds: float, during=None, **job_variables):
    """One run of a new deployment (its flow sleeps `seconds`) served until the worker is done;
    `during(run_id)` runs beside the worker. The run as the server has it afterwards."""
    async def scenario():
        pool, deployment = await _deployment(**job_variables)
        [run] = await _runs(deployment, seconds)
        await _serve(pool, during=None if during is None else lambda worker: during(run.id))
        return await _read(run.id)

    return asyncio.run(scenario())


def test_each_run_gets_its_own_pipeline_and_job(gitlab):
    """Two runs due at once: two pipelines, each job executing its own run id (one create
    answered 502 after GitLab made the pipeline: looked up by name, not started twice)."""
    async def scenario():
        pool, deployment = await _deployment()
        first, second = await _runs(deployment, 0, 0)
        gitlab.ci.lose_create_responses = 1
        await _serve(pool)
        return [await _read(r.id) for r in (first, second)]

    runs = asyncio.run(scenario())
    ci = gitlab.ci
    assert len(ci.pipelines) == 2
    by_run = {ci.variables(pid)["PREFECT__FLOW_RUN_ID"]: pid for pid in ci.pipelines}
    for run in runs:
        assert run.state.type.value == "COMPLETED", run.state
        pid = by_run[str(run.id)]
        assert run.infrastructure_pid == f"gitlab:42:{pid}"
        [job] = ci.pipelines[pid]["_jobs"]  # lint, test, build-image… never join it
        assert (job["name"], job["status"], job["tag_list"]) == ("flow-run", "success", [TAG])
        assert job["_image"] == "registry.example/claims/train:abc123"
        assert run.labels["gitlab.job.url"] == job["web_url"]
        assert str(run.id) in ci.logs[job["id"]].read_text()
        sent = ci.variables(pid)
        assert sent["MLOPS_RUNNER_TAG"] == TAG and sent["PREFECT_API_URL"].startswith("http")
        assert "PREFECT_HOME" not in sent and not [k for k in sent if "KEY" in k]
        assert ci.pipelines[pid]["name"] == sent["MLOPS_PIPELINE_NAME"]


def test_pipeline_failing_before_the_flow_starts_crashes_the_run_with_the_job_url(gitlab):
    async def scenario():
        pool, deployment = await _deployment()
        [run] = await _runs(deployment, 0)
        gitlab.ci.fail_before_script = "runner_system_failure"  # e.g. the image cannot be pulled
        await _serve(pool)
        return await _read(run.id)

    run = asyncio.run(scenario())
    [pipeline] = gitlab.ci.pipelines.values()
    [job] = pipeline["_jobs"]
    assert run.state.type.value == "CRASHED"
    assert run.state.message == (
        f"GitLab job 'flow-run' failed (runner_system_failure): {job['web_url']} "
        f"(pipeline {pipeline['web_url']})")


def test_cancelled_in_prefect_while_the_job_waits_for_a_runner_cancels_the_pipeline(gitlab):
    gitlab.ci.runner_tags = {"some-other-tag"}  # no runner will ever pick the job up

    async def cancel(run_id):
        async def started():
            return (await _read(run_id)).infrastructure_pid

        await _until(started)
        async with get_client() as client:
            await client.set_flow_run_state(run_id, Cancelling(), force=True)

    run = _one_run(0, cancel)
    [pipeline] = gitlab.ci.pipelines.values()
    assert pipeline["status"] == "canceled" and ("POST", "/api/v4/projects/42/pipelines/"
                                                 f"{pipeline['id']}/cancel") in gitlab.requests
    assert run.state.type.value == "CANCELLED"
    assert pipeline["web_url"] in run.state.message


def test_cancelled_in_prefect_while_the_job_runs_stops_the_job(gitlab):
    """`prefect flow-run execute` in the job sees the cancellation and stops the flow itself; the
    job ends and the worker does not crash the cancelled run."""
    async def cancel(run_id):
        await _until_running(run_id)
        async with get_client() as client:
            await client.set_flow_run_state(run_id, Cancelling())

    run = _one_run(120, cancel)
    [pipeline] = gitlab.ci.pipelines.values()
    assert run.state.type.value == "CANCELLED", run.state  # the 120 s flow did not complete
    assert pipeline["status"] in ("success", "canceled")  # and its job has ended


def test_no_runner_for_the_tag_crashes_the_run_after_the_pending_timeout(gitlab):
    gitlab.ci.runner_tags = {"some-other-tag"}

    run = _one_run(0, pending_timeout_s=2)
    [pipeline] = gitlab.ci.pipelines.values()
    assert pipeline["status"] == "canceled"
    assert run.state.type.value == "CRASHED"
    assert run.state.message.startswith(f"No GitLab runner tagged '{TAG}' picked up job "
                                        "'flow-run' within 2s")


def test_job_canceled_in_gitlab_ends_the_run(gitlab):
    """Someone cancels the pipeline in GitLab while the flow runs: the run does not stay Running."""
    async def cancel_in_gitlab(run_id):
        await _until_running(run_id)
        [pipeline] = gitlab.ci.pipelines
        gitlab.ci.cancel(pipeline)

    run = _one_run(120, cancel_in_gitlab)
    [pipeline] = gitlab.ci.pipelines.values()
    [job] = pipeline["_jobs"]
    assert pipeline["status"] == "canceled" and job["status"] == "canceled"
    assert run.state.type.value == "CRASHED", run.state  # the worker's verdict, or the engine's
    assert job["web_url"] in run.state.message or "termination" in run.state.message.lower()


def test_a_pipeline_ending_after_its_run_went_to_another_pipeline_leaves_the_run_alone(gitlab):
    """The run was crashed (its heartbeats stopped) and scheduled again into a new pipeline while
    GitLab still showed the old job running; the old job failing later must not crash the re-run
    (a lost runner here, its failure read by the worker still following the old pipeline)."""
    async def rerun_elsewhere_then_lose_the_runner(run_id):
        await _until_running(run_id)
        async with get_client() as client:  # what the worker records for the re-run's pipeline
            await client.update_flow_run(run_id, infrastructure_pid="gitlab:42:999999")
        [pipeline] = gitlab.ci.pipelines.values()
        gitlab.ci.lose_runner(pipeline["_jobs"][0]["id"])

    run = _one_run(120, rerun_elsewhere_then_lose_the_runner)
    [pipeline] = gitlab.ci.pipelines.values()
    assert pipeline["_jobs"][0]["failure_reason"] == "runner_system_failure"
    assert run.state.type.value == "RUNNING", run.state  # the re-run's, untouched


def test_gitlab_unreachable_when_a_run_is_due_crashes_it_after_bounded_retries(gitlab):
    async def scenario():
        pool, deployment = await _deployment()
        [run] = await _runs(deployment, 0)

        with anyio.fail_after(60):
            async with GitLabCIWorker(work_pool_name=pool, prefetch_seconds=30) as worker:
                gitlab.fail_next(50, status=503, retry_after=None)
                await worker.get_and_submit_flow_runs()
        gitlab.failures.clear()
        return await _read(run.id)

    run = asyncio.run(scenario())
    assert run.state.type.value == "CRASHED"
    assert "GitLabUnavailable" in run.state.message and "failed 3 times (HTTP 503)" in \
        run.state.message, run.state.message
    assert gitlab.ci.pipelines == {}  # nothing started, nothing to register
    creates = [r for r in gitlab.requests if r == ("POST", "/api/v4/projects/42/pipeline")]
    assert len(creates) == 3


def test_worker_start_refuses_a_token_without_the_api_scope(gitlab, monkeypatch):
    worker = GitLabCIWorker(work_pool_name="never-created")
    monkeypatch.setenv("MLOPS_GITLAB_TOKEN", "glpat-read")
    with pytest.raises(SystemExit) as refused:
        asyncio.run(worker.connect())
    assert str(refused.value) == ("error: gitlab-ci worker: the GitLab token has scopes read_api: "
                                  "the gitlab-ci worker needs the api scope to create and cancel "
                                  "pipelines")
    monkeypatch.setenv("MLOPS_GITLAB_TOKEN", "glpat-revoked")
    with pytest.raises(SystemExit, match="HTTP 401.*invalid, expired or revoked"):
        asyncio.run(worker.connect())
    monkeypatch.delenv("MLOPS_GITLAB_TOKEN")
    with pytest.raises(SystemExit, match="needs CI_SERVER_URL, CI_PROJECT_ID and MLOPS_GITLAB"):
        asyncio.run(worker.connect())
    monkeypatch.setenv("MLOPS_GITLAB_TOKEN", "glpat-good")
    gitlab.variables_role = "no_one_allowed"  # GitLab.com's default for new projects
    with pytest.raises(SystemExit, match="Minimum role to use pipeline variables"):
        asyncio.run(worker.connect())
    assert gitlab.ci.pipelines == {}


def test_kill_infrastructure_cancels_the_pipeline(gitlab):
    from prefect.exceptions import InfrastructureNotAvailable, InfrastructureNotFound

    from deployments.gitlab_job import GitLabCIJobConfiguration

    gitlab.ci.runner_tags = set()  # the job waits for a runner
    config = GitLabCIJobConfiguration()

    async def scenario():
        worker = GitLabCIWorker(work_pool_name="unused")
        await worker.connect()
        made = worker._gitlab.create("main", {"PREFECT__FLOW_RUN_ID": str(uuid.uuid4()),
                                              "MLOPS_RUNNER_TAG": TAG}, "kill-me")
        await worker.kill_infrastructure(f"gitlab:42:{made.id}", config)
        with pytest.raises(InfrastructureNotFound):
            await worker.kill_infrastructure("gitlab:42:999999", config)
        with pytest.raises(InfrastructureNotAvailable):
            await worker.kill_infrastructure("docker:abc", config)
        return made

    made = asyncio.run(scenario())
    assert gitlab.ci.pipelines[made.id]["status"] == "canceled"
