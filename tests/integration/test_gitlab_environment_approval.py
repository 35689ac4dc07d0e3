"""Identity gitlab-environment against the fake GitLab (protected environments, blocked
deployments, `POST deployments/:id/approval` answered with each person's own token through
python-gitlab): the deploy run's blocked production deployment is found through its pipeline,
GitLab's answers are judged by the policy (two distinct approvers, four eyes) and recorded in the
signed trail with GitLab's user ids; a rejection stops it; forged approvals count for nothing.
One trained version (built by dave) for the module; the promotion comes last."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tasks.adapters.audit_trail import AuditTrail, event
from tasks.contracts.release import Identity
from tasks.core.errors import ApprovalError, ConfigError, DeployError
from tasks.core.settings import Settings
from tests.conftest import config_yaml, release_parts, signed_parts, trail_here
from tests.fakes.gitlab_api import FakeGitLab

POLICY = Path(__file__).resolve().parents[2] / "configs" / "policy.yaml"
DEPLOY = """deploy:
  staging:
    smoke: {max_latency_ms: 2000}
"""
USERS = {"glpat-alice": {"id": 3, "username": "alice", "name": "Alice Approver"},
         "glpat-bob": {"id": 4, "username": "bob", "name": "Bob Approver"},
         "glpat-dave": {"id": 5, "username": "dave", "name": "Dave Builder"}}
SHA = "a91957a858320c0e17f3a0eca7cfacbff50ea29a"


@dataclass
class World:
    fake: FakeGitLab
    home: Path

    @property
    def registry(self):
        from tasks.adapters.registries import open_registry

        return open_registry(Settings.from_env())

    @property
    def cfg(self):
        from tasks.core.config import load_config

        return load_config("glenv", self.home / "configs")

    @property
    def rule(self):
        from tasks.core.policy_config import governance, load_policy

        return governance(load_policy(Settings.from_env().policy_path), self.cfg)

    def trail(self) -> AuditTrail:
        return trail_here(self.registry, "glenv")

    def facts(self) -> dict[str, str]:
        from tasks.release.guard import sealed_facts

        tags = self.registry.require_version("glenv", "1").tags
        facts, unusable = sealed_facts("glenv", "1", tags, self.trail().events())
        assert unusable is None, unusable
        return facts

    def champion(self) -> str | None:
        return self.registry.alias_version("glenv", "champion")

    def blocked(self) -> tuple[str, int]:
        """A new deploy run id and the blocked production deployment of its pipeline."""
        run_id = str(uuid.uuid4())
        made = self.fake.add_blocked_deployment("production", SHA, "main", run_id)
        return run_id, made["id"]

    def answer(self, token: str, deployment_id: int, status: str, comment: str = "") -> None:
        """What the approve/reject buttons on GitLab's environment page send, as that person."""
        import gitlab

        client = gitlab.Gitlab(self.fake.url, private_token=token)
        project = client.projects.get("42", lazy=True)
        project.deployments.get(deployment_id, lazy=True).approval(status=status,
                                                                   comment=comment or None)

    def gitlab(self):
        from tasks.adapters.gitlab_deployments import GitLabDeploymentApprovals

        return GitLabDeploymentApprovals(Settings.from_env().gitlab)

    def decide(self, run_id: str):
        from tasks.release import environment_approval as gitlab_env

        trail = self.trail()
        deployment_id = gitlab_env.request(trail, event, self.gitlab(), "1", run_id)
        return gitlab_env.decide(trail, event, self.rule, self.gitlab(), "1", run_id,
                                 deployment_id)

    def records(self, run_id: str) -> list[dict[str, str]]:
        return [r for r in self.trail().events() if r.get("flow_run_id") == run_id]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from flows.training import training_pipeline

    home = tmp_path_factory.mktemp("glenv")
    (home / "configs").mkdir()
    fake = FakeGitLab(tokens={"glpat-good": ["api"], **{t: ["api"] for t in USERS}},
                      users=USERS).start()
    fake.protect_environment("production", approval_rules=[
        {"access_level": 30, "access_level_description": "Developers + Maintainers",
         "required_approvals": 2}])
    policy = yaml.safe_load(POLICY.read_text())
    policy["environments"]["production"]["approval"].update(identity="gitlab-environment",
                                                            min_approvals=2)
    (home / "policy.yaml").write_text(yaml.safe_dump(policy))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_HOME", str(home / "state"))
        mp.setenv("MLOPS_CONFIG_DIR", str(home / "configs"))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.setenv("MLOPS_DEVICE", "cpu")
        mp.setenv("USER", "dave")  # dave builds the version: he may not approve it
        (home / "configs" / "glenv.yaml").write_text(config_yaml(name="glenv", extra=DEPLOY))
        training_pipeline("glenv")
        mp.setenv("MLOPS_POLICY", str(home / "policy.yaml"))
        for key, value in {"CI_SERVER_URL": fake.url, "CI_PROJECT_ID": "42",
                           "MLOPS_GITLAB_TOKEN": "glpat-good"}.items():
            mp.setenv(key, value)
        w = World(fake, home)
        reg = w.registry
        reg.move_alias("glenv", "staging", "1")
        w.trail().write(event("staged", "staging", None, "1", "pipeline", alias="staging",
                              digest=reg.require_manifest("glenv", "1")))
        assert w.rule.identity == "gitlab-environment" and w.rule.min_approvals == 2
        assert w.facts()["built_by"] == "dave"  # sealed at registration: four eyes reads it
        yield w
    fake.stop()


def test_the_run_finds_its_own_blocked_deployment_once_and_records_it(world):
    other_run, other = world.blocked()  # another deploy run's deployment is never taken
    run_id, mine = world.blocked()
    assert other != mine
    assert world.decide(run_id) is None  # nobody has approved yet
    requested = [r for r in world.records(run_id) if r["action"] == "approval-requested"]
    assert [(r["deployment_id"], r["gitlab_required_approvals"]) for r in requested] == [
        (str(mine), "2")]
    world.fake.requests.clear()
    assert world.decide(run_id) is None  # a replay reads the id from the signed record
    assert ("GET", "/api/v4/projects/42/deployments") not in world.fake.requests
    assert len([r for r in world.records(run_id) if r["action"] == "approval-requested"]) == 1


def test_no_blocked_deployment_or_an_unprotected_environment_is_a_clear_refusal(world):
    from tasks.release import environment_approval as gitlab_env

    with pytest.raises(ApprovalError, match="no blocked production deployment in GitLab for "
                                            "flow run"):
        gitlab_env.request(world.trail(), event, world.gitlab(), "1", str(uuid.uuid4()))
    saved = world.fake.protected_environments.pop("production")
    try:
        with pytest.raises(ConfigError, match="'production' is not protected"):
            gitlab_env.request(world.trail(), event, world.gitlab(), "1", str(uuid.uuid4()))
        world.fake.protect_environment("production")  # protected, but no approvals required
        with pytest.raises(ConfigError, match="requires no deployment approvals"):
            gitlab_env.request(world.trail(), event, world.gitlab(), "1", str(uuid.uuid4()))
    finally:
        world.fake.protected_environments["production"] = saved
    with pytest.raises(ApprovalError, match="needs GitLab settings"):
        gitlab_env.request(world.trail(), event, None, "1", str(uuid.uuid4()))


def test_the_builder_approving_in_gitlab_does_not_count_and_is_recorded(world):
    run_id, deployment_id = world.blocked()
    world.answer("glpat-dave", deployment_id, "approved", "mine, looks fine")
    world.answer("glpat-alice", deployment_id, "approved")
    assert world.decide(run_id) is None
    assert world.champion() is None
    refused = [r for r in world.records(run_id) if r["action"] == "approval-refused"]
    assert [(r["actor"], r["actor_id"], r["source"]) for r in refused] == [
        ("dave", "5", "gitlab-environment")]
    assert "four eyes: dave built it" in refused[0]["reason"]
    world.decide(run_id)  # read again (a resumed run): each answer is recorded once
    assert len([r for r in world.records(run_id) if r["action"] == "approval-refused"]) == 1


def test_gitlab_refuses_the_pipeline_triggerer_and_unknown_statuses_itself(world):
    import gitlab

    run_id, deployment_id = world.blocked()
    with pytest.raises(gitlab.exceptions.GitlabDeploymentApprovalError,
                       match="cannot approve your own deployment"):
        world.answer("glpat-good", deployment_id, "approved")  # the worker's bot started it
    with pytest.raises(gitlab.exceptions.GitlabDeploymentApprovalError, match="valid value"):
        world.answer("glpat-alice", deployment_id, "maybe")


def test_a_rejection_stops_the_deployment_and_is_recorded_with_its_comment(world):
    run_id, deployment_id = world.blocked()
    world.answer("glpat-alice", deployment_id, "approved")
    world.answer("glpat-bob", deployment_id, "rejected", "drift on region north")
    with pytest.raises(DeployError, match=r"glenv v1 rejected in GitLab by bob \(GitLab user 4, "
                                          r"verified\): drift on region north"):
        world.decide(run_id)
    rejected = [r for r in world.records(run_id) if r["action"] == "approval-rejected"]
    assert [(r["actor"], r["actor_id"], r["comment"]) for r in rejected] == [
        ("bob", "4", "drift on region north")]
    assert world.champion() is None


def test_forged_approvals_in_tags_or_typed_names_count_for_nothing(world):
    """Attack: with store write access, write `approved_by`/`approvals` tags on the version and
    promote as a typed name (or with one's own GitLab token): nothing in GitLab, nothing moves."""
    from tasks.release.production import promote

    reg = world.registry
    for tag, value in (("approved_by", "alice,bob"), ("approvals", "alice:approved,bob:approved"),
                       ("gitlab.deployment_approvals", "2")):
        reg.client.set_model_version_tag("glenv", "1", tag, value)
    try:
        run_id, _ = world.blocked()
        assert world.decide(run_id) is None
        for who in (Identity(username="alice"),
                    Identity(username="alice", user_id=3, verified=True, via="gitlab-token"),
                    Identity(username="alice", user_id=3, verified=True, via="declared")):
            with pytest.raises(ApprovalError, match="approve the blocked production deployment"):
                promote(reg, world.cfg, "1", who, "forged", **signed_parts())
    finally:
        for tag in ("approved_by", "approvals", "gitlab.deployment_approvals"):
            reg.client.delete_model_version_tag("glenv", "1", tag)
    assert world.champion() is None
    assert "promoted" not in [r["action"] for r in world.trail().events()]


def test_the_deploy_run_waits_paused_and_reads_gitlab_again_each_time_it_is_woken(world):
    """The approval step of the deploy flow, run in this process (paused, as `mlops run` waits):
    woken with one approval it waits again; woken after the second it returns GitLab's approver.
    The run's own blocked deployment is what GitLab creates for its pipeline."""
    import threading
    import time

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    from tasks.contracts.release import SmokeReport
    from tasks.release.approval import AWAITING, obtain_approval

    made: dict[str, object] = {}

    @flow(name="deploy")  # the deploy flow's name and parameters: `mlops approve` finds it
    def deploy_approval_step(model: str, version: str):
        made["run"] = str(flow_run.get_id())
        made["deployment"] = world.fake.add_blocked_deployment(
            "production", SHA, "main", made["run"])["id"]
        return obtain_approval(registry=world.registry, cfg=world.cfg, version=version,
                               staging=SmokeReport(passed=True, checks=[]), comment="",
                               wait=True, **release_parts())

    thread = threading.Thread(
        target=lambda: made.update(result=deploy_approval_step("glenv", "1")), daemon=True)
    thread.start()

    def paused(key: str):
        deadline = time.monotonic() + 180  # a guard against hanging, not a timing assertion
        while time.monotonic() < deadline:
            if "run" in made:
                with get_client(sync_client=True) as client:
                    run = client.read_flow_run(made["run"])
                if run.state.is_paused() and run.state.state_details.pause_key == key:
                    return run
            time.sleep(0.5)
        raise AssertionError(f"the run never paused with key {key}")

    def wake() -> None:
        with get_client(sync_client=True) as client:
            assert client.resume_flow_run(made["run"]).status.value == "ACCEPT"

    try:
        first = paused("gitlab-approval-1")
        assert AWAITING in first.tags and "model:glenv" in first.tags
        world.answer("glpat-alice", made["deployment"], "approved")
        wake()
        paused("gitlab-approval-2")  # one of two: it waits again
        world.answer("glpat-bob", made["deployment"], "approved", "go")
        from prefect.settings import PREFECT_API_URL
        from typer.testing import CliRunner

        from mlops.cli import app

        with pytest.MonkeyPatch.context() as mp:  # what the production-approval job runs
            mp.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
            typed = CliRunner().invoke(app, ["approve", "glenv", "--as", "alice"])
            assert typed.exit_code == 2, typed.output
            assert "approved or rejected in GitLab" in typed.output
            woken = CliRunner().invoke(app, ["approve", made["run"]])
            assert woken.exit_code == 0, woken.output
            assert "reads its production deployment's approvals from GitLab" in woken.output
    finally:
        thread.join(timeout=180)
    approval = made["result"]
    assert (approval.approver.username, approval.approver.user_id, approval.comment) == (
        "bob", 4, "go")
    with get_client(sync_client=True) as client:
        assert AWAITING not in client.read_flow_run(made["run"]).tags
    assert [r["actor_id"] for r in world.records(made["run"])
            if r["action"] == "approval-given"] == ["3", "4"]


def test_two_distinct_gitlab_users_approve_and_the_version_is_promoted(world):
    from tasks.release.production import promote

    run_id, deployment_id = world.blocked()
    world.answer("glpat-alice", deployment_id, "approved", "metrics fine")
    assert world.decide(run_id) is None  # one of two
    world.answer("glpat-bob", deployment_id, "approved", "ok for prod")
    approval = world.decide(run_id)
    assert approval is not None and approval.approver.via == "gitlab-environment"
    assert (approval.approver.username, approval.approver.user_id) == ("bob", 4)
    given = [r for r in world.records(run_id) if r["action"] == "approval-given"]
    assert [(r["actor"], r["actor_id"], r["deployment_id"]) for r in given] == [
        ("alice", "3", str(deployment_id)), ("bob", "4", str(deployment_id))]
    assert all(r["decided_at"] and r["identity"].endswith("verified)") for r in given)
    promote(world.registry, world.cfg, "1", approval.approver, approval.comment, run_id,
            **signed_parts())
    assert world.champion() == "1"
    promoted = [r for r in world.trail().events() if r["action"] == "promoted"][-1]
    assert promoted["identity"] == "bob (GitLab user 4, verified)"
    assert world.trail().problems() == []  # the chain with these records verifies
