"""Issue 21's rules as pure functions: the policy's approval floor that a model YAML can only
tighten, the facts sealed at registration, what counts as a promotion, approvals, and the
preconditions of any production change."""

from __future__ import annotations

import textwrap

import pytest

from tasks.contracts.release import Identity
from tasks.core.config import parse_config
from tasks.core.errors import ConfigError, PolicyRefused, TrailMismatch
from tasks.core.policy_config import governance, parse_policy, version_checks
from tasks.core.sealed import edited, facts_fields, registered_facts
from tasks.release.guard import (
    approvals_short,
    not_a_promotion,
    require_production_change,
)
from tasks.release.policy import refusal
from tests.conftest import config_yaml

POLICY = textwrap.dedent("""\
    version: "t-2"
    required_tags: [classification]
    environments:
      staging: {classifications: [internal]}
      production:
        classifications: [internal]
        approval: {identity: declared, approvers: [alice, bob, carol], min_approvals: 1}
    """)


def rule_for(production: str = "", policy: str = POLICY):
    cfg = parse_config(config_yaml(name="m") + (f"deploy:\n  production: {production}\n"
                                                 if production else ""))
    return governance(parse_policy(policy), cfg)


def test_a_model_yaml_cannot_switch_approval_off_or_widen_the_approvers():
    rule = rule_for("{approval: none, approvers: [alice, mallory]}")
    assert rule.required and rule.approvers == ["alice"]
    assert refusal(rule, Identity(username="mallory"), None) == \
        "mallory may not approve m (approvers: alice)"
    with pytest.raises(ConfigError, match="lists nobody policy t-2"):
        rule_for("{approvers: [mallory]}")


def test_a_model_yaml_may_tighten_identity_and_the_number_of_approvals():
    rule = rule_for("{identity: gitlab, approvers: [bob], min_approvals: 2}")
    assert (rule.identity, rule.min_approvals, rule.approvers) == ("gitlab", 2, ["bob"])
    assert "needs a verified approver" in refusal(rule, Identity(username="bob"), None)
    assert rule.policy_sha256 and rule.config_sha256


def test_four_eyes_reads_the_sealed_builder_and_refuses_when_there_is_none():
    rule = rule_for()
    alice = Identity(username="alice")
    assert "four eyes: alice built it" in refusal(rule, alice, {"built_by": "alice"})
    assert "nobody is recorded as having built" in refusal(rule, alice, {"built_by": ""})
    assert refusal(rule, alice, {"built_by": "dave"}) is None
    assert refusal(rule, alice, None) is None  # a rollback: four eyes does not apply


def test_sealed_facts_name_every_edit_and_every_removal():
    tags = {"built_by": "dave", "classification": "secret", "check.gate_passed": "passed",
            "gate_value": "0.9", "environment": "python 3.11"}
    record = {"action": "registered", "to_version": "3",
              **facts_fields(tags, ["classification"])}
    facts = registered_facts([record], "3")
    assert facts == {"built_by": "dave", "classification": "secret",
                     "check.gate_passed": "passed"}
    assert registered_facts([record], "4") is None
    assert edited(facts, tags) == []
    assert edited(facts, {**tags, "classification": "internal", "built_by": "erin"}) == [
        "tag built_by='erin' was edited after registration (sealed: 'dave')",
        "tag classification='internal' was edited after registration (sealed: 'secret')"]
    gone = {k: v for k, v in tags.items() if k != "check.gate_passed"}
    assert edited(facts, gone) == ["tag check.gate_passed=None was removed after registration "
                                   "(sealed: 'passed')"]


def test_an_external_check_counts_only_from_a_record():
    tags = {"check.security_scan": "passed", "check.gate_passed": "passed"}
    assert version_checks(tags) == {"gate_passed": "passed"}
    recorded = [{"action": "check-recorded", "to_version": "3", "check": "security_scan",
                 "result": "passed"}]
    assert version_checks(tags, recorded, "3")["security_scan"] == "passed"


def test_a_promotion_only_moves_production_forward():
    events = [{"action": "promoted", "alias": "champion", "to_version": "1"},
              {"action": "promoted", "alias": "champion", "from_version": "1", "to_version": "3"}]
    assert not_a_promotion(events, "m", "4", "3", "champion") is None
    assert not_a_promotion(events, "m", "4", None, "champion") is None
    assert "is champion already" in not_a_promotion(events, "m", "3", "3", "champion")
    assert "`mlops rollback m 1`" in not_a_promotion(events, "m", "1", "3", "champion")
    assert "older than champion v3" in not_a_promotion(events, "m", "2", "3", "champion")
    assert "older than champion v1.0.10" in not_a_promotion([], "m", "1.0.9", "1.0.10",
                                                           "champion")


def test_approvals_count_distinct_people_since_the_version_was_last_staged():
    rule = rule_for(policy=POLICY.replace("min_approvals: 1", "min_approvals: 2"))
    alice, bob = Identity(username="alice"), Identity(username="bob")
    given = [{"action": "approval-given", "to_version": "3", "actor": "alice"}]
    assert approvals_short(rule, given, "3", bob) is None
    assert "needs 2 distinct approvers, v3 has 1 (alice)" in approvals_short(rule, given, "3",
                                                                             alice)
    restaged = [*given, {"action": "staged", "to_version": "3"}]
    assert approvals_short(rule, restaged, "3", bob) is not None


def test_no_key_or_an_unprotected_ref_changes_nothing():
    rule = rule_for()
    with pytest.raises(ConfigError, match="without MLOPS_AUDIT_KEY"):
        require_production_change(rule, None, {})
    require_production_change(rule, b"k", {})
    unprotected = {"GITLAB_CI": "true", "CI_COMMIT_REF_NAME": "mr-1",
                   "CI_COMMIT_REF_PROTECTED": "false"}
    with pytest.raises(PolicyRefused, match=r"protected refs \(mr-1 is not protected\)"):
        require_production_change(rule, b"k", unprotected)
    require_production_change(rule, b"k", {**unprotected, "CI_COMMIT_REF_PROTECTED": "true"})


def test_the_approval_form_compares_with_the_champion_now():
    from tasks.contracts.release import SmokeReport
    from tasks.reports.approval import approval_markdown

    def form(champion, judged):
        return approval_markdown(
            model="m", version="1", champion=champion, tags={"gate_metric": "roc_auc"},
            metrics={"test_roc_auc": 0.88}, params={"gate_champion_version": judged},
            run_url=None, smoke=SmokeReport(passed=True, checks=["ok: x"]), approvers=None)

    stale = form("3", "none")
    assert "No champion yet" not in stale
    assert "**Champion now: v3**. This version was judged against no champion" in stale
    assert "No champion yet" in form(None, "none")


def test_the_mr_note_of_a_reused_version_says_where_it_stands_against_production_now():
    from tasks.reports.merge_request import reused_comment

    old = reused_comment("m", "1", {"test_roc_auc": 0.88}, "http://run", None, champion="3")
    assert "Production runs v3 now" in old and "`mlops rollback m 1`" in old
    assert "no approval is asked" in reused_comment("m", "3", {}, "http://run", None,
                                                     champion="3")


def test_an_intent_whose_alias_never_moved_leaves_the_champion_where_it_was():
    """A promotion killed after its intent and before the alias moved: while it is unfinished
    the live alias may still be the old champion; once abandoned, the trail says the old one."""
    from tasks.adapters.audit_store import alias_from
    from tasks.release.guard import alias_as_recorded

    class Registry:
        live = "2"

        def alias_version(self, model: str, alias: str) -> str | None:
            return self.live

    done = [{"action": "promoted", "alias": "champion", "from_version": "1", "to_version": "2"}]
    intent = [*done, {"action": "promotion-intent", "alias": "champion", "from_version": "2",
                      "to_version": "3"}]
    abandoned = [*intent, {"action": "promotion-abandoned", "alias": "champion",
                           "from_version": "2", "to_version": "3"}]
    assert alias_from(intent, "champion") == "3" and alias_from(abandoned, "champion") == "2"
    assert alias_as_recorded(Registry(), "m", "champion", intent) == "2"  # under way
    assert alias_as_recorded(Registry(), "m", "champion", abandoned) == "2"
    moved = Registry()
    moved.live = "1"
    with pytest.raises(TrailMismatch, match="points at v1 but the signed trail says v3"):
        alias_as_recorded(moved, "m", "champion", intent)
