"""Approval source gitlab-environment as pure rules: the policy names it, a model YAML cannot
loosen it, and GitLab's recorded answers are judged by the organisation's rule (listed approvers,
four eyes against the sealed builder and commit author, distinct approvers by GitLab user id)."""

from __future__ import annotations

import textwrap

from tasks.adapters.gitlab_deployments import parse_deployment
from tasks.contracts.gitlab import DeploymentApproval, EnvironmentDeployment
from tasks.contracts.release import Identity
from tasks.core.config import parse_config
from tasks.core.governance import stricter_identity
from tasks.core.policy_config import governance, parse_policy
from tasks.release.environment_approval import gitlab_identity, judge
from tasks.release.policy import refusal
from tests.conftest import config_yaml

FACTS = {"built_by": "dave", "commit_author": "Erin Example <erin@example.com>"}


def rule_for(approval: str, production: str = ""):
    policy = textwrap.dedent(f"""\
        version: "t-23"
        required_tags: [classification]
        environments:
          staging: {{classifications: [internal]}}
          production:
            classifications: [internal]
            approval: {approval}
        """)
    cfg = parse_config(config_yaml(name="m") + (f"deploy:\n  production: {production}\n"
                                                 if production else ""))
    return governance(parse_policy(policy), cfg)


def answer(user_id: int, username: str, status: str = "approved", at: str = "2026-12-06T10:00",
           name: str = "", comment: str = "") -> DeploymentApproval:
    return DeploymentApproval(user_id=user_id, username=username, name=name or username.title(),
                              status=status, created_at=at, comment=comment)


def deployment(*approvals: DeploymentApproval) -> EnvironmentDeployment:
    return EnvironmentDeployment(id=11, environment="production", status="blocked", sha="abc",
                                 pipeline_id=9100, job="production-approval",
                                 approvals=tuple(approvals))


def test_the_policy_names_gitlab_environment_and_a_model_yaml_cannot_weaken_it():
    rule = rule_for("{identity: gitlab-environment, min_approvals: 2}",
                    production="{identity: declared, min_approvals: 1}")
    assert (rule.identity, rule.min_approvals) == ("gitlab-environment", 2)
    assert rule_for("{identity: declared}", production="{identity: gitlab, approvers: [a]}"
                    ).identity == "gitlab"
    assert stricter_identity("gitlab", "gitlab-environment") == "gitlab-environment"
    assert stricter_identity("declared", "declared") == "declared"


def test_a_typed_name_or_a_token_identity_is_not_a_gitlab_environment_approval():
    rule = rule_for("{identity: gitlab-environment}")
    typed = refusal(rule, Identity(username="alice"), FACTS)
    token = refusal(rule, Identity(username="alice", user_id=3, verified=True, via="gitlab-token"),
                    FACTS)
    assert "approve the blocked production deployment" in typed
    assert "approve the blocked production deployment" in token
    assert refusal(rule, gitlab_identity(answer(3, "alice")), FACTS) is None


def test_two_distinct_gitlab_users_meet_a_minimum_of_two():
    rule = rule_for("{identity: gitlab-environment, min_approvals: 2}")
    one = judge(rule, deployment(answer(3, "alice")), FACTS)
    assert not one.approved and "needs 2 distinct approvers in GitLab" in one.short
    two = judge(rule, deployment(answer(3, "alice"), answer(4, "bob")), FACTS)
    assert two.approved and [w.user_id for w, _ in two.counted] == [3, 4]
    assert all(w.verified and w.via == "gitlab-environment" for w, _ in two.counted)


def test_one_user_answering_twice_counts_once_and_their_newest_answer_wins():
    rule = rule_for("{identity: gitlab-environment, min_approvals: 2}")
    twice = judge(rule, deployment(answer(3, "alice"), answer(3, "alice", at="2026-12-06T11")),
                  FACTS)
    assert not twice.approved and len(twice.counted) == 1
    changed = judge(rule, deployment(answer(3, "alice"),
                                     answer(3, "alice", "rejected", at="2026-12-06T11",
                                            comment="wrong data")), FACTS)
    assert changed.rejection is not None and changed.rejection[1].comment == "wrong data"


def test_four_eyes_refuses_the_builder_and_the_commit_author_from_the_sealed_facts():
    rule = rule_for("{identity: gitlab-environment}")
    builder = judge(rule, deployment(answer(5, "dave")), FACTS)
    author = judge(rule, deployment(answer(6, "erin.x", name="Erin Example")), FACTS)
    assert not builder.approved and "four eyes: dave built it" in builder.refused[0][2]
    assert not author.approved and "wrote its commit" in author.refused[0][2]
    unsealed = judge(rule, deployment(answer(3, "alice")), None)
    assert not unsealed.approved and "nobody is recorded as having built" in unsealed.refused[0][2]


def test_listed_approvers_and_rejections_by_people_who_may_not_decide():
    rule = rule_for("{identity: gitlab-environment, approvers: [alice, bob]}")
    mallory = judge(rule, deployment(answer(9, "mallory")), FACTS)
    assert "mallory may not approve m" in mallory.refused[0][2] and not mallory.approved
    stray = judge(rule, deployment(answer(9, "mallory", "rejected"), answer(3, "alice")), FACTS)
    assert stray.rejection is None and stray.approved  # an unlisted rejection decides nothing
    stopped = judge(rule, deployment(answer(4, "bob", "rejected"), answer(3, "alice")), FACTS)
    assert not stopped.approved and stopped.rejection[0].username == "bob"


def test_the_deployment_is_read_from_gitlabs_documented_response_shape():
    raw = {"id": 42, "iid": 2, "ref": "main", "sha": "a91957a8", "status": "blocked",
           "environment": {"id": 9, "name": "production"},
           "deployable": {"id": 7, "name": "production-approval", "pipeline": {"id": 61}},
           "pending_approval_count": 1,
           "approvals": [{"user": {"id": 100, "username": "security-user-1",
                                   "name": "security user-1", "state": "active"},
                          "status": "approved", "created_at": "2022-02-24T20:22:30.097Z",
                          "comment": "Looks good to me"}],
           "approval_summary": {"rules": []}}
    parsed = parse_deployment(raw)
    assert (parsed.id, parsed.environment, parsed.pipeline_id, parsed.job) == (
        42, "production", 61, "production-approval")
    assert parsed.approvals[0] == DeploymentApproval(
        user_id=100, username="security-user-1", name="security user-1", status="approved",
        created_at="2022-02-24T20:22:30.097Z", comment="Looks good to me")
