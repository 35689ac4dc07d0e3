"""The organisation policy through the life cycle: a refused config registers nothing, a version
carries the policy's hash, its checks and its compliance report, staging and production refuse
what the policy rules out (with a record naming the rule), and a policy change is listed."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from flows.training import training_pipeline
from mlops.cli import app
from tasks.adapters.audit_trail import event
from tasks.contracts.release import Identity
from tasks.core.config import load_config
from tasks.core.errors import ConfigError, PolicyRefused
from tasks.core.policy_config import load_policy
from tasks.core.settings import Settings
from tasks.release.production import promote
from tasks.release.staging import deploy_staging
from tasks.reports.compliance import REPORT_NAME
from tests.conftest import config_yaml, release_parts, signed_parts, trail_here
from tests.integration.conftest import versions

# whole training or deploy flows per test: `make test` runs this module, the quick subset
# (`make test-fast`) leaves it out (docs/testing.md)
pytestmark = pytest.mark.slow

runner = CliRunner()
POLICY = """\
version: "it-1"
required_tags: [classification, department]
allowed_values:
  classification: [public, internal, confidential, secret]
  department: [claims]
environments:
  staging:
    classifications: [public, internal]
    checks: [compliance_validated, data_validated, gate_passed]
  production:
    classifications: [public, internal]
    checks: [compliance_validated, data_validated, gate_passed, security_scan]
"""


@pytest.fixture
def policy(home, monkeypatch):
    path = home / "policy.yaml"
    path.write_text(POLICY)
    monkeypatch.setenv("MLOPS_POLICY", str(path))
    return path


def last(reg, name: str) -> dict[str, str]:
    return trail_here(reg, name).events()[-1]


def test_a_config_the_policy_refuses_trains_nothing(write_config, registry, policy, home):
    (home / "configs" / "bad.yaml").write_text(config_yaml(name="bad").replace(
        "department: claims", "department: marketing"))
    result = runner.invoke(app, ["train", "bad"])
    assert result.exit_code == 2, result.output
    assert "tag department='marketing' is not allowed (allowed_values.department: claims)" \
        in result.stderr
    with pytest.raises(ConfigError, match="department='marketing'"):
        training_pipeline("bad")  # a worker's run checks too, before any data is read
    assert versions(registry(), "bad") == []


def test_registration_records_the_policy_and_production_follows_it(
        write_config, registry, policy, monkeypatch):
    monkeypatch.setenv("USER", "dave")
    name = write_config("pol")
    training_pipeline(name)
    reg, cfg = registry(), load_config(name, Settings.from_env().config_dir)
    ref = reg.require_version(name, "1")
    assert ref.tags["policy_sha256"] == load_policy(policy).sha256
    assert ref.tags["policy_version"] == "it-1"
    assert {k: v for k, v in ref.tags.items() if k.startswith("check.")} == {
        "check.compliance_validated": "passed", "check.data_validated": "passed",
        "check.gate_passed": "passed"}
    report = reg.run_text(ref.run_id, REPORT_NAME)
    assert report and "Compliance report: pol v1" in report and "it-1" in report
    assert "check &#x27;security_scan&#x27; has not passed" in report  # production's verdict

    digest = reg.require_manifest(name, "1")
    reg.move_alias(name, "staging", "1")
    trail_here(reg, name).write(event("staged", "staging", None, "1", "pipeline",
                                      alias="staging", digest=digest))
    with pytest.raises(PolicyRefused, match="check 'security_scan' has not passed"):
        promote(reg, cfg, "1", Identity(username="alice"), **signed_parts())
    assert reg.alias_version(name, "champion") is None
    refused = last(reg, name)
    assert refused["action"] == "promotion-refused"
    assert "environments.production.checks" in refused["reason"]

    recorded = runner.invoke(app, ["check-off", name, "1", "security_scan", "--result",
                                   "passed", "--as", "ci-scanner", "--evidence", "job 7"])
    assert recorded.exit_code == 0, recorded.output
    computed = runner.invoke(app, ["check-off", name, "1", "gate_passed", "--result", "passed",
                                   "--as", "x"])
    assert computed.exit_code == 2 and "computed at registration" in computed.stderr
    promote(reg, cfg, "1", Identity(username="alice"), **signed_parts())
    assert reg.alias_version(name, "champion") == "1"

    listed = runner.invoke(app, ["compliance", name, "--report"])
    assert listed.exit_code == 0, listed.output
    assert "compliant" in listed.stdout and "NON-COMPLIANT" not in listed.output
    page = reg.run_text(ref.run_id, REPORT_NAME)
    assert "promoted" in page and "alice" in page and "ci-scanner" in page

    policy.write_text(POLICY.replace("department: [claims]", "department: [underwriting]"))
    changed = runner.invoke(app, ["compliance", name])
    assert changed.exit_code == 1, changed.output
    assert "it-1 (policy changed)" in changed.stdout
    assert "NON-COMPLIANT v1: tag department='claims' is not allowed" in changed.stderr


def test_a_run_is_judged_by_the_policy_it_started_with(write_config, registry, policy,
                                                       monkeypatch):
    """The flow loads the policy once and hands it to the register stage: a policy file changed
    while the run trains does not change what the version records (it used to be read again)."""
    import flows.training

    started = load_policy(policy)
    profile = flows.training.profile_training_data

    def profile_then_change_the_policy(**kwargs):
        policy.write_text(POLICY.replace('version: "it-1"', 'version: "it-2"'))
        return profile(**kwargs)

    monkeypatch.setattr(flows.training, "profile_training_data", profile_then_change_the_policy)
    name = write_config("pin")
    training_pipeline(name)
    tags = registry().require_version(name, "1").tags
    assert load_policy(policy).policy.version == "it-2"  # the file did change mid-run
    assert (tags["policy_version"], tags["policy_sha256"]) == ("it-1", started.sha256)


def test_a_secret_version_is_refused_by_staging(write_config, registry, policy, home):
    name = "sec"
    (home / "configs" / f"{name}.yaml").write_text(config_yaml(name=name).replace(
        "classification: internal", "classification: secret"))
    training_pipeline(name)
    reg, cfg = registry(), load_config(name, Settings.from_env().config_dir)

    def no_server(*args):
        raise AssertionError("a refused version must not be served")

    with pytest.raises(PolicyRefused, match="environments.staging.classifications"):
        deploy_staging(reg, cfg, "1", "pipeline", server_factory=no_server, **release_parts())
    assert reg.alias_version(name, "staging") is None
    refused = last(reg, name)
    assert (refused["action"], refused["environment"]) == ("promotion-refused", "staging")
    assert "classification 'secret' may not run in staging (allowed: public, internal)" \
        in refused["reason"]
