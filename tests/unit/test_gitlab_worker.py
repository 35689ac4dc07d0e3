"""The gitlab-ci worker's pure parts: how Prefect finds it, the pools' templates, the pipeline
variables (an allow-list: no worker secret ever becomes a pipeline variable), the rules that
decide when a pipeline is canceled or a run crashed, the image step without a Docker engine."""

from __future__ import annotations

import importlib.metadata
import uuid

import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_KEY, PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner

from deployments import image
from deployments.gitlab_job import (
    CANCEL_GRACE_S,
    GitLabCIJobConfiguration,
    crash_message,
    leave_alone,
    only_a_person_left,
    should_cancel,
    superseded,
    waited_too_long,
)
from deployments.gitlab_worker import GitLabCIWorker, parse_pid
from deployments.pools import PoolSpec, base_job_template, load_pools
from tasks.core.errors import ConfigError


def test_prefect_finds_the_worker_type_through_the_entry_point():
    from prefect.workers.base import BaseWorker

    points = importlib.metadata.entry_points(group="prefect.collections")
    assert {p.name: p.value for p in points}["prefect_mlops"] == "deployments.gitlab_worker"
    assert BaseWorker.get_worker_class_from_type("gitlab-ci") is GitLabCIWorker


def test_gitlab_ci_pool_templates_carry_the_pools_tag_and_env():
    pools = load_pools()
    gpu = base_job_template(pools["gpu-runners"], "gitlab-ci")
    props = gpu["variables"]["properties"]
    assert props["runner_tag"]["default"] == "saas-linux-medium-amd64-gpu-standard"
    assert props["env"]["default"] == {"MLOPS_DEVICE": "cuda", "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}
    assert {"ref", "image", "job_name", "pending_timeout_s", "prefect_api_url"} <= set(props)
    assert gpu["job_configuration"]["runner_tag"] == "{{ runner_tag }}"
    cpu = base_job_template(pools["cpu-runners"], "gitlab-ci")["variables"]["properties"]
    assert cpu["runner_tag"]["default"] == "saas-linux-medium-amd64"
    two = PoolSpec(name="x", description="x", runner_tags=["a", "b"], device="cpu",
                   base_image="python")
    with pytest.raises(ConfigError, match="a gitlab-ci pool has one runner tag"):
        base_job_template(two, "gitlab-ci")


def test_pools_default_to_gitlab_ci_where_gitlab_is_configured(monkeypatch):
    from mlops.cli import app

    for key in ("CI_SERVER_URL", "CI_PROJECT_ID"):
        monkeypatch.delenv(key, raising=False)
    plain = CliRunner().invoke(app, ["pools", "show", "cpu-runners"])
    assert plain.exit_code == 0 and '"stream_output"' in plain.stdout  # a process template
    gitlab = CliRunner().invoke(app, ["pools", "show", "cpu-runners"], env={
        "CI_SERVER_URL": "https://gitlab.example.com", "CI_PROJECT_ID": "42"})
    assert gitlab.exit_code == 0 and '"runner_tag": "{{ runner_tag }}"' in gitlab.stdout
    wrong = CliRunner().invoke(app, ["pools", "show", "cpu-runners", "--type", "k8s"])
    assert wrong.exit_code == 2


def _prepared(env: dict[str, str], **fields) -> GitLabCIJobConfiguration:
    config = GitLabCIJobConfiguration(env=env, runner_tag="gpu-tag", **fields)
    run = FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name="brave-otter")
    config.prepare_for_flow_run(run)
    return config


def test_pipeline_variables_are_an_allow_list():
    with temporary_settings({PREFECT_API_KEY: "pnu_worker_secret",
                             PREFECT_API_URL: "http://10.0.0.5:4200/api"}):
        config = _prepared({"MLOPS_DEVICE": "cuda", "CI_MERGE_REQUEST_IID": "5",
                            "CI_JOB_ID": "31337", "MLFLOW_TRACKING_TOKEN": "glpat-xyz",
                            "SNOWFLAKE_PASSWORD": "hunter2"}, image="reg/train:abc")
        assert config.env["PREFECT_API_KEY"] == "pnu_worker_secret"  # what Prefect would forward
        sent, dropped = config.pipeline_variables("prefect brave-otter #1", "http://10.0.0.5:4200/api")
    assert sent == {"MLOPS_DEVICE": "cuda", "CI_MERGE_REQUEST_IID": "5",
                    "PREFECT__FLOW_RUN_ID": config.env["PREFECT__FLOW_RUN_ID"],
                    "PREFECT_API_URL": "http://10.0.0.5:4200/api", "MLOPS_RUNNER_TAG": "gpu-tag",
                    "MLOPS_IMAGE": "reg/train:abc", "MLOPS_PIPELINE_NAME": "prefect brave-otter #1"}
    assert dropped == ["MLFLOW_TRACKING_TOKEN", "SNOWFLAKE_PASSWORD"]
    runners = _prepared({}, prefect_api_url="https://prefect.example.com/api")
    sent, _ = runners.pipeline_variables("n", "http://127.0.0.1:4200/api")
    assert sent["PREFECT_API_URL"] == "https://prefect.example.com/api" and "MLOPS_IMAGE" not in sent


def test_deploy_runs_use_the_deploy_run_job_of_their_model():
    """.gitlab-ci.yml runs the deploy flow in deploy-run (GitLab's production environment,
    resource_group production-<model>): the worker says which flow and model, and follows it."""
    from prefect.client.schemas.objects import Flow

    def prepared(flow: str, parameters: dict, **fields) -> GitLabCIJobConfiguration:
        config = GitLabCIJobConfiguration(env={}, runner_tag="cpu", **fields)
        run = FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name="calm-heron",
                      parameters=parameters)
        config.prepare_for_flow_run(run, flow=Flow(name=flow))
        return config

    deploy = prepared("deploy", {"model": "fraud", "version": "7"})
    sent, _ = deploy.pipeline_variables("n", "http://10.0.0.5:4200/api")
    assert (sent["MLOPS_FLOW"], sent["MLOPS_MODEL"]) == ("deploy", "fraud")
    assert deploy.followed_job == "deploy-run"
    training = prepared("training-pipeline", {"model": "fraud", "deploy": True})
    assert training.followed_job == "flow-run"
    assert training.pipeline_variables("n", "http://x/api")[0]["MLOPS_FLOW"] == "training-pipeline"
    assert prepared("deploy", {"model": "fraud"}, job_name="run-it").followed_job == "run-it"


def test_a_run_someone_decided_about_is_never_crashed():
    for state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED", "PAUSED", "SCHEDULED",
                  "CANCELLING"):
        assert leave_alone(state), state
    assert not leave_alone("RUNNING") and not leave_alone("PENDING") and not leave_alone(None)


def test_a_run_handed_to_another_pipeline_is_not_this_pipelines_to_crash():
    assert superseded("gitlab:42:7", "gitlab:42:5")  # re-run in pipeline 7; 5 ended late
    assert not superseded("gitlab:42:5", "gitlab:42:5")
    assert not superseded(None, "gitlab:42:5")  # not recorded yet: still this pipeline's run


def test_a_pipeline_left_waiting_on_a_manual_approval_job_is_not_followed():
    """The deploy run's job ended (the run waits suspended); the pipeline stays `manual` while
    production-approval waits for people: the worker stops polling it."""
    assert only_a_person_left("manual", "success")
    assert only_a_person_left("manual", "failed")
    assert not only_a_person_left("manual", "running")  # the run's own job still runs
    assert not only_a_person_left("manual", None)
    assert not only_a_person_left("running", "success")


def test_when_the_worker_cancels_a_pipeline():
    assert should_cancel("CANCELLING", "pending", 0) and should_cancel("CANCELLED", None, 0)
    assert not should_cancel("CANCELLING", "running", 1)  # the job cancels its flow itself
    assert should_cancel("CANCELLING", "running", CANCEL_GRACE_S)
    assert not should_cancel("RUNNING", "running", 999) and not should_cancel("PAUSED", None, 9)
    assert waited_too_long("pending", 61, 60) and waited_too_long(None, 61, 60)
    assert not waited_too_long("running", 999, 60) and not waited_too_long("pending", 999, 0)
    assert not waited_too_long("pending", 59, 60)


def test_crash_messages_name_the_job():
    assert crash_message("failed", "https://gl/p/1", "flow-run", "failed", "https://gl/j/2",
                         "stuck_or_timeout_failure") == (
        "GitLab job 'flow-run' failed (stuck_or_timeout_failure): https://gl/j/2 "
        "(pipeline https://gl/p/1)")
    assert "without a 'flow-run' job: https://gl/p/1" in crash_message(
        "success", "https://gl/p/1", "flow-run", None, None, None)


def test_infrastructure_pid():
    assert parse_pid("gitlab:42:1007") == ("42", 1007)
    assert parse_pid("gitlab:claims/models:9") == ("claims/models", 9)
    for bad in ("docker:abc", "gitlab:42", "gitlab::x"):
        with pytest.raises(ValueError):
            parse_pid(bad)


def test_deploy_without_a_docker_engine_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    for name in image.HASHED_FILES:
        (tmp_path / name).write_text(name)
    monkeypatch.setenv("MLOPS_IMAGE_BUILD", "auto")
    built = image.build_image(str(tmp_path / "Dockerfile"), exists=lambda ref: "no-engine",
                              build=lambda **kw: pytest.fail("nothing to build with"))
    pushed = image.push_image(built["image_name"], built["tag"], built["found"],
                              push=lambda **kw: pytest.fail("nothing to push"))
    assert not built["built"] and not pushed["pushed"]
    assert capsys.readouterr().out.splitlines() == [
        f"image {built['image']}: build skipped (no Docker engine here; process and gitlab-ci "
        "pools need none, docker pools need the image built where Docker runs)"]
