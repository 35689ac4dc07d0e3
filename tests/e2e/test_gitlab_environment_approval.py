"""Identity gitlab-environment end to end: a real Prefect server, `prefect deploy`, one gitlab-ci
worker and the fake GitLab whose simulated runner runs this repository's `deploy-run` and
`production-approval` jobs. The deploy run waits suspended on the blocked production deployment
of its own pipeline; the builder's approval in GitLab is refused by the policy and recorded;
once another GitLab user approves, playing `production-approval` (`mlops approve <run>`) wakes
the run, which promotes in a second pipeline holding no second approval job; `mlops history`
and `mlops audit verify` show the approver by GitLab user id."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import config_yaml
from tests.e2e.conftest import BIN, REPO, background, cli_env, mlops
from tests.e2e.test_deployments import api_get
from tests.fakes.gitlab_api import FakeGitLab

pytestmark = pytest.mark.slow
POLICY = REPO / "configs" / "policy.yaml"
DEPLOY = "deploy:\n  staging:\n    smoke: {max_latency_ms: 2000}\n"
USERS = {"glpat-alice": {"id": 3, "username": "alice", "name": "Alice Approver"},
         "glpat-dave": {"id": 5, "username": "dave", "name": "Dave Builder"}}
POOLS = ("cpu-runners", "gpu-runners")


def _wait(check, timeout_s: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + timeout_s  # a guard against hanging, not a timing assertion
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}" + (
            f"\n{log.read_text()[-3000:]}" if log and log.exists() else "")
        time.sleep(0.5)
    return found


def _drop_pools(api: str, unless: str | None = None) -> None:
    for pool in POOLS:
        with contextlib.suppress(urllib.error.HTTPError):
            if api_get(api, f"/work_pools/{pool}")["type"] != unless:
                urllib.request.urlopen(urllib.request.Request(
                    f"{api}/work_pools/{pool}", method="DELETE"), timeout=10)


@pytest.fixture(scope="module")
def world(prefect_server, tmp_path_factory):
    """gitlab-ci pools and deploy/deploy-fraud on the session's server, a policy that asks for
    GitLab's deployment approvals (one approver besides the builder), a protected production
    environment that requires two approvals in GitLab, fraud v1 built by dave, and a worker.
    The pools are removed again afterwards (other modules create their own)."""
    api, root = prefect_server, tmp_path_factory.mktemp("gitlab-environment")
    (root / "configs").mkdir()
    (root / "configs" / "fraud.yaml").write_text(config_yaml(name="fraud", rows=3000,
                                                             extra=DEPLOY))
    policy = yaml.safe_load(POLICY.read_text())
    policy["environments"]["production"]["approval"].update(identity="gitlab-environment",
                                                            min_approvals=1)
    (root / "policy.yaml").write_text(yaml.safe_dump(policy))
    state = {"MLOPS_HOME": str(root / "state"), "MLOPS_CONFIG_DIR": str(root / "configs"),
             "MLOPS_AUDIT_KEY": "e2e-audit-key"}
    env = cli_env(PREFECT_API_URL=api, MLOPS_PROJECT_DIR=str(REPO), MLOPS_IMAGE_BUILD="skip",
                  PREFECT_WORKER_QUERY_SECONDS="2", PREFECT_HOME=str(root / "prefect-home"),
                  **state)
    env.pop("GITLAB_USER_LOGIN", None)
    _drop_pools(api, unless="gitlab-ci")
    pools = mlops(["pools", "apply", "--type", "gitlab-ci"], env)
    assert pools.returncode == 0, pools.stderr
    deployed = subprocess.run([str(BIN / "prefect"), "--no-prompt", "deploy", "--name",
                               "deploy-fraud"], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=300)
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    trained = mlops(["train", "fraud"], {**env, "USER": "dave", "LOGNAME": "dave"})  # v1: dave
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]

    fake = FakeGitLab(tokens={"glpat-worker": ["api"], **{t: ["api"] for t in USERS}},
                      users=USERS).start()
    fake.protect_environment("production", approval_rules=[
        {"access_level": 30, "access_level_description": "Developers + Maintainers",
         "required_approvals": 2}])
    # the runner: the project's masked CI/CD variables (the pipeline's token among them)
    runner = {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HOME": str(root),
              "LANG": "C.UTF-8", "MLOPS_POLICY": str(root / "policy.yaml"),
              "MLOPS_GITLAB_TOKEN": "glpat-worker", "PREFECT_HOME": str(root / "runner-prefect"),
              "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **state}
    ci = fake.enable_ci(REPO / ".gitlab-ci.yml", runner, root)
    ci.project_variables["MLOPS_APPROVAL_SOURCE"] = "gitlab-environment"
    worker_env = {**env, "CI_SERVER_URL": fake.url, "CI_PROJECT_ID": "42",
                  "MLOPS_GITLAB_TOKEN": "glpat-worker"}
    cmd = [str(BIN / "prefect"), "worker", "start", "--pool", "cpu-runners", "--name", "gl-env"]
    try:
        with background(cmd, root / "gl-env.log", env=worker_env):
            yield {"api": api, "fake": fake, "ci": ci, "env": worker_env,
                   "cli": {**env, "MLOPS_POLICY": str(root / "policy.yaml")},
                   "log": root / "gl-env.log"}
    finally:
        fake.stop()
        _drop_pools(api)


def _gitlab(fake: FakeGitLab, token: str):
    import gitlab

    return gitlab.Gitlab(fake.url, private_token=token).projects.get("42", lazy=True)


def test_a_deployment_approved_in_gitlab_by_another_user_is_promoted(world):
    """Also: the worker's own approval is refused by GitLab, the builder's by the policy (and
    recorded), the job cannot be played before GitLab's approvals are complete."""
    import gitlab

    api, fake, ci, log = world["api"], world["fake"], world["ci"], world["log"]
    made = subprocess.run([str(BIN / "prefect"), "deployment", "run", "deploy/deploy-fraud",
                           "--params", '{"version": "1"}'], env=world["env"],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    run_id = made.stdout.split("UUID:")[1].split()[0]

    def pipelines() -> list[dict]:
        return sorted((p for p in list(ci.pipelines.values())
                       if p["_pipeline_variables"].get("PREFECT__FLOW_RUN_ID") == run_id),
                      key=lambda p: p["id"])

    _wait(lambda: api_get(api, f"/flow_runs/{run_id}")["state"]["name"] == "Suspended", 300,
          "the deploy run to wait suspended", log)
    [first] = pipelines()
    jobs = {j["name"]: j for j in first["_jobs"]}
    assert sorted(jobs) == ["deploy-run", "production-approval"]
    _wait(lambda: jobs["deploy-run"]["status"] == "success", 60, "deploy-run to end")  # no runner held
    assert jobs["production-approval"]["status"] == "manual"
    [blocked] = [d for d in fake.deployments if d["status"] == "blocked"]
    assert (blocked["environment"]["name"], blocked["deployable"]["pipeline"]["id"],
            blocked["deployable"]["name"]) == ("production", first["id"], "production-approval")
    assert "awaiting-approval" in api_get(api, f"/flow_runs/{run_id}")["tags"]

    deployment = blocked["id"]
    with pytest.raises(gitlab.exceptions.GitlabDeploymentApprovalError,
                       match="cannot approve your own deployment"):  # the worker triggered it
        _gitlab(fake, "glpat-worker").deployments.get(deployment, lazy=True).approval(
            status="approved")
    _gitlab(fake, "glpat-dave").deployments.get(deployment, lazy=True).approval(
        status="approved", comment="my model, ship it")
    play = _gitlab(fake, "glpat-alice").jobs.get(jobs["production-approval"]["id"], lazy=True)
    with pytest.raises(gitlab.exceptions.GitlabJobPlayError, match="not playable"):
        play.play()  # GitLab still waits for a second approval
    _gitlab(fake, "glpat-alice").deployments.get(deployment, lazy=True).approval(
        status="approved", comment="metrics fine")
    play.play()  # the production-approval job: `mlops approve <run>` wakes the run

    done = _wait(lambda: (r := api_get(api, f"/flow_runs/{run_id}"))["state"]["type"] in (
        "COMPLETED", "FAILED", "CRASHED") and r, 300, "the resumed run", log)
    assert done["state"]["type"] == "COMPLETED", log.read_text()[-3000:]
    assert "awaiting-approval" not in done["tags"]
    woken = ci.logs[jobs["production-approval"]["id"]].read_text()
    assert "reads its production deployment's approvals from GitLab" in woken, woken
    first_pipeline, resumed = pipelines()
    assert [j["name"] for j in resumed["_jobs"]] == ["deploy-run"]  # no second approval job
    assert resumed["_pipeline_variables"]["MLOPS_RESUMED"] == "true"
    assert "MLOPS_RESUMED" not in first_pipeline["_pipeline_variables"]
    assert [d["status"] for d in fake.deployments if d["deployable"]
            and d["deployable"]["name"] == "production-approval"] == ["success"]

    cli = world["cli"]
    history = mlops(["history", "fraud"], cli)
    assert history.returncode == 0, history.stderr
    rows = [" ".join(line.split()) for line in history.stdout.splitlines()]
    refused = [r for r in rows if " approval-refused " in r]
    given = [r for r in rows if " approval-given " in r]
    promoted = [r for r in rows if " promoted " in r]
    assert len(refused) == 1 and "dave (GitLab user 5, verified)" in refused[0], rows
    from tasks.adapters.audit_trail import AuditTrail
    from tasks.adapters.registries import open_registry
    from tasks.core.settings import Settings

    found = Settings.from_env(cli)  # the signed records themselves
    events = AuditTrail(open_registry(found), "fraud", settings=found,
                        key=found.resolve_audit_key()).events()
    answers = [(r["action"], r["actor"], r["actor_id"], r["deployment_id"], r["source"])
               for r in events if r.get("source") == "gitlab-environment"
               and r["action"] != "approval-requested"]
    assert answers == [("approval-refused", "dave", "5", str(deployment), "gitlab-environment"),
                       ("approval-given", "alice", "3", str(deployment), "gitlab-environment")]
    [why] = [r["reason"] for r in events if r["action"] == "approval-refused"]
    assert why.startswith("four eyes: dave"), why
    assert len(given) == 1 and "alice (GitLab user 3, verified)" in given[0], rows
    assert len(promoted) == 1 and "alice (GitLab user 3, verified)" in promoted[0], rows
    verify = mlops(["audit", "verify", "fraud"], cli)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "@champion v1" in verify.stdout, verify.stdout
