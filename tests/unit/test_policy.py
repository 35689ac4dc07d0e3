"""The organisation policy: its schema, what it says about model configs and versions, and the
one-line exit-2 errors `mlops check-config` / `mlops models` give for each bad input."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlops.cli import app
from tasks.adapters.model_version import ModelVersionRef
from tasks.core.config import load_config
from tasks.core.errors import ConfigError
from tasks.core.policy_config import (
    config_problems,
    deployment_refusal,
    environment_problems,
    load_policy,
    parse_policy,
    registration_tags,
    version_checks,
)
from tasks.release.compliance import version_status
from tasks.reports.compliance import compliance_html
from tests.conftest import config_yaml

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
POLICY = """\
version: "t-1"
required_tags: [classification, department, compliance]
allowed_values:
  classification: [public, official, secret]
  department: [claims, defense]
environments:
  staging:
    classifications: [public, official, secret]
    checks: [compliance_validated]
  production:
    classifications: [public, official]
    checks: [compliance_validated, security_scan]
"""
GOOD_TAGS = {"classification": "official", "department": "claims", "compliance": "fisma-moderate"}


def model_yaml(tags: str, required: str = "[classification, department]") -> str:
    return config_yaml().replace(
        "tags: {classification: internal, department: claims}", f"tags: {tags}").replace(
        "required_tags: [classification, department]", f"required_tags: {required}")


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """Run the CLI with a policy and one model YAML in a temp folder."""
    (tmp_path / "models").mkdir()
    monkeypatch.setenv("MLOPS_CONFIG_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("MLOPS_POLICY", str(tmp_path / "policy.yaml"))
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))

    def run(model: str, *args: str, policy: str = POLICY):
        (tmp_path / "policy.yaml").write_text(policy)
        path = tmp_path / "models" / "m.yaml"
        path.write_text(model)
        return runner.invoke(app, list(args or ("check-config", str(path))))

    return run


def test_shipped_policy_fits_the_reference_models():
    loaded = load_policy(ROOT / "configs" / "policy.yaml")
    for name in ("fraud", "damage", "settlement"):
        cfg = load_config(name, ROOT / "configs" / "models")
        assert config_problems(loaded.policy, cfg.registry) == [], name


def test_a_compliant_model_passes(cli):
    good = model_yaml("{classification: official, department: claims, compliance: fisma}")
    result = cli(good)
    assert result.exit_code == 0, result.output
    assert "policy t-1" in result.stdout


def test_a_required_tag_missing_is_exit_2_naming_the_tag(cli):
    result = cli(model_yaml("{classification: official, department: claims}"))
    assert result.exit_code == 2
    assert "required tag 'compliance' is missing (policy)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_value_outside_the_allowed_set_names_the_allowed_values(cli):
    result = cli(model_yaml("{classification: internal, department: claims, compliance: x}"))
    assert result.exit_code == 2
    assert ("tag classification='internal' is not allowed (allowed_values.classification: "
            "public, official, secret)") in result.stderr


def test_a_model_yaml_cannot_drop_a_policy_tag(cli):
    """The model lists fewer required tags than the policy: the policy's still apply."""
    dropped = model_yaml("{department: claims, compliance: x}", required="[]")
    result = cli(dropped)
    assert result.exit_code == 2
    assert "required tag 'classification' is missing (policy); allowed values: public, " \
           "official, secret" in result.stderr
    listed = cli(dropped, "models")
    assert listed.exit_code == 2 and "INVALID" in listed.stdout
    assert "policy: required tag 'classification' is missing" in listed.stdout


def test_a_model_yaml_may_add_a_requirement(cli):
    more = model_yaml("{classification: official, department: claims, compliance: x}",
                      required="[classification, owner]")
    result = cli(more)
    assert result.exit_code == 2
    assert "registry.tags lacks required compliance tag(s) owner" in result.stderr


@pytest.mark.parametrize(("policy", "named"), [
    (POLICY.replace("  production:\n", "  prod:\n"), "unknown key 'environments.prod'"),
    (POLICY.replace("    checks: [compliance_validated, security_scan]",
                    "    check: [security_scan]"), "unknown key 'environments.production.check'"),
    (POLICY.replace('version: "t-1"\n', ""), "missing required key 'version'"),
    (POLICY.replace("classifications: [public, official]\n", "classifications: [public, top]\n"),
     "environments.production.classifications: 'top' is not in allowed_values.classification"),
    (POLICY.replace("required_tags: [classification, department, compliance]",
                    "required_tags: [classification, department, compliance"),
     "malformed policy YAML"),
    (POLICY + "version: again\n", "key 'version' appears twice"),
])
def test_a_malformed_policy_is_one_line_naming_the_key(cli, policy, named):
    good = model_yaml("{classification: official, department: claims, compliance: x}")
    for result in (cli(good, policy=policy), cli(good, "models", policy=policy)):
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and named in lines[0] and "policy.yaml" in lines[0], lines


def test_a_missing_policy_file_says_what_to_set(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_POLICY", str(tmp_path / "nope.yaml"))
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 2 and "set MLOPS_POLICY" in result.stderr


def test_a_secret_version_is_refused_where_only_public_or_official_may_run():
    policy = parse_policy(POLICY, "policy.yaml")
    tags = {**GOOD_TAGS, "classification": "secret", "check.compliance_validated": "passed",
            "check.security_scan": "passed"}
    assert environment_problems(policy.policy, "staging", tags, version_checks(tags)) == []
    reason = deployment_refusal(policy, "production", "3", tags, [])
    assert reason is not None and "environments.production.classifications" in reason
    assert "classification 'secret' may not run in production (allowed: public, official)" \
        in reason


def test_a_version_missing_a_required_check_is_refused_before_production():
    policy = parse_policy(POLICY, "policy.yaml")
    tags = {**GOOD_TAGS, **registration_tags(policy, {"compliance_validated": True})}
    reason = deployment_refusal(policy, "production", "2", tags, [])
    assert "environments.production.checks: check 'security_scan' has not passed " \
           "(not recorded; record it with `mlops check-off`)" in reason
    recorded = [{"action": "check-recorded", "to_version": "2", "check": "security_scan",
                 "result": "passed"}]
    assert deployment_refusal(policy, "production", "2", tags, recorded) is None
    other = [{**recorded[0], "to_version": "1"}]
    assert deployment_refusal(policy, "production", "2", tags, other) is not None
    failed_later = [*recorded, {**recorded[0], "result": "failed"}]
    assert "result 'failed'" in deployment_refusal(policy, "production", "2", tags, failed_later)


def test_registration_tags_carry_the_policy_hash_and_each_check():
    loaded = parse_policy(POLICY, "policy.yaml")
    tags = registration_tags(loaded, {"compliance_validated": True, "gate_passed": False})
    assert tags == {"policy_version": "t-1", "policy_sha256": loaded.sha256,
                    "check.compliance_validated": "passed", "check.gate_passed": "failed"}
    assert parse_policy(POLICY + "# a comment\n").sha256 != loaded.sha256


def test_a_policy_change_lists_the_old_version_as_non_compliant():
    old = parse_policy(POLICY, "policy.yaml")
    tags = {**GOOD_TAGS, **registration_tags(old, {"compliance_validated": True})}
    ref = ModelVersionRef(name="m", version="1", run_id=None, source="", tags=tags)
    assert version_status(old, ref, [], {"champion": None}).compliant
    stricter = parse_policy(POLICY.replace("department: [claims, defense]",
                                           "department: [defense]"), "policy.yaml")
    status = version_status(stricter, ref, [], {"champion": None})
    assert not status.compliant and status.policy_changed and status.registered_under == "t-1"
    assert "tag department='claims' is not allowed" in status.problems[0]


def test_a_live_version_the_environment_now_refuses_is_non_compliant():
    loaded = parse_policy(POLICY, "policy.yaml")
    tags = {**GOOD_TAGS, **registration_tags(loaded, {"compliance_validated": True})}
    ref = ModelVersionRef(name="m", version="4", run_id=None, source="", tags=tags)
    assert version_status(loaded, ref, [], {"staging": "4"}).compliant
    status = version_status(loaded, ref, [], {"champion": "4"})
    assert status.aliases == ["champion"]
    assert "@champion runs it in production" in status.problems[0]
    legacy = ModelVersionRef(name="m", version="5", run_id=None, source="", tags=GOOD_TAGS)
    assert "registered without a policy" in version_status(loaded, legacy, [], {}).problems[0]


def test_the_report_escapes_and_holds_every_section():
    html = compliance_html(
        model="m", version="1", tags={**GOOD_TAGS, "git_commit": "abc", "note": "<script>"},
        policy_version="t-1", policy_sha256="f" * 64, checks={"security_scan": "passed"},
        environments={"staging": [], "production": ["environments.production.checks: x"]},
        validation=["100 rows"], gate=["passed"], records=[
            {"seq": "3", "action": "promoted", "actor": "alice", "identity": "alice (declared)"}],
        card="# card", generated_at="now")
    assert "<script>" not in html and "&lt;script&gt;" in html
    for part in ("Policy", "Checks", "Lineage", "Validation", "Gate decision", "Approvals",
                 "Model card", "security_scan", "alice (declared)", "does NOT satisfy"):
        assert part in html, part


def test_a_numeric_policy_version_is_kept_as_text():
    assert parse_policy(POLICY.replace('version: "t-1"', "version: 2")).policy.version == "2"


def test_load_policy_names_a_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_policy(tmp_path / "policy.yaml")


def test_a_check_name_must_be_snake_case():
    with pytest.raises(ConfigError, match="check name 'Security Scan'"):
        parse_policy(POLICY.replace("security_scan]", "Security Scan]"), "p.yaml")


def test_a_policy_needs_a_classification_rule():
    bad = textwrap.dedent(POLICY).replace("required_tags: [classification, department, "
                                          "compliance]", "required_tags: [department]")
    with pytest.raises(ConfigError, match="required_tags must include classification"):
        parse_policy(bad, "p.yaml")


def test_the_mr_comment_and_the_approval_form_point_to_the_report():
    from tasks.contracts.release import SmokeReport
    from tasks.contracts.training import EvalReport, GateCheck, GateDecision
    from tasks.reports.approval import approval_markdown
    from tasks.reports.compliance import REPORT_NAME
    from tasks.reports.merge_request import merge_request_comment

    report = EvalReport(primary_metric="roc_auc", metrics={"roc_auc": 0.9}, slices={},
                        test_rows=10)

    def comment(passed: bool) -> str:
        decision = GateDecision(passed=passed, metric="roc_auc", value=0.9, champion_value=None,
                                champion_version=None,
                                checks=[GateCheck(name="floor", passed=passed, detail="d")])
        return merge_request_comment("m", report, None, None, decision, "http://mlflow/run",
                                     None, [])

    assert REPORT_NAME in comment(True) and REPORT_NAME not in comment(False)
    form = approval_markdown(
        model="m", version="3", champion=None,
        tags={"gate_metric": "roc_auc", "policy_version": "t-1",
              "check.security_scan": "passed"},
        metrics={}, params={}, run_url="http://mlflow/run", smoke=SmokeReport(passed=True,
                                                                             checks=["ok: x"]),
        approvers=None)
    assert "Compliance: policy t-1; checks: security_scan passed" in form
    assert f"`{REPORT_NAME}` in the [MLflow run](http://mlflow/run)" in form
    assert "mlops compliance m 3 --report" in form
    assert "would refuse" not in form
    refused = approval_markdown(
        model="m", version="3", champion=None, tags={"gate_metric": "roc_auc"}, metrics={},
        params={}, run_url=None, smoke=SmokeReport(passed=True, checks=[]), approvers=None,
        policy_refusal="environments.production.checks: check 'security_scan' has not passed")
    assert "**The compliance policy would refuse it in production now**: " \
           "environments.production.checks" in refused
