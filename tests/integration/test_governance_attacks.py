"""Issue 21's insider attacks on one model (store write access, a branch, no audit key and no
one else's token): each one is refused, names what it met, and moves nothing. One store for the
module: gov v1 was champion, v2 is champion, v3 is staged; each test leaves it so."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlops.cli import app
from tasks.adapters.audit_trail import AuditTrail, event
from tasks.contracts.release import Identity
from tasks.core.audit_event import AuditEvent
from tasks.core.errors import ApprovalError, ConfigError, PolicyRefused, TrailMismatch
from tasks.core.settings import Settings
from tests.conftest import config_yaml, signed_parts, trail_here

runner = CliRunner()
DEPLOY = """deploy:
  staging:
    smoke: {max_latency_ms: 2000}
  production:
    approvers: [alice, bob, carol, dave]
"""
POLICY = Path(__file__).resolve().parents[2] / "configs" / "policy.yaml"


@dataclass
class Store:
    home: Path
    mp: pytest.MonkeyPatch

    @property
    def registry(self):
        from tasks.adapters.registries import open_registry

        return open_registry(Settings.from_env())

    @property
    def cfg(self):
        from tasks.core.config import load_config

        return load_config("gov", self.home / "configs")

    def trail(self) -> AuditTrail:
        return trail_here(self.registry, "gov")

    def actions(self) -> list[str]:
        return [r["action"] for r in self.trail().events()]

    def champion(self) -> str | None:
        return self.registry.alias_version("gov", "champion")

    def policy(self, **approval: object) -> None:
        """An organisation policy with this production approval block (MLOPS_POLICY)."""
        import yaml

        text = yaml.safe_load(POLICY.read_text())
        text["environments"]["production"]["approval"] = approval
        path = self.home / f"policy-{len(list(self.home.glob('policy-*')))}.yaml"
        path.write_text(yaml.safe_dump(text))
        self.mp.setenv("MLOPS_POLICY", str(path))


def _staged(store: Store, version: str) -> None:
    reg = store.registry
    reg.move_alias("gov", "staging", version)
    store.trail().write(event("staged", "staging", None, version, "pipeline", alias="staging",
                              digest=reg.require_manifest("gov", version)))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from flows.training import training_pipeline
    from tasks.release.production import promote

    home = tmp_path_factory.mktemp("gov")
    (home / "configs").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_HOME", str(home / "state"))
        mp.setenv("MLOPS_CONFIG_DIR", str(home / "configs"))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLOPS_POLICY", raising=False)
        mp.setenv("MLOPS_DEVICE", "cpu")
        mp.setenv("USER", "dave")  # dave builds every version: he may not approve one
        s = Store(home, mp)
        for trials in (2, 3, 4):
            (home / "configs" / "gov.yaml").write_text(
                config_yaml(name="gov", n_trials=trials, extra=DEPLOY))
            training_pipeline("gov")
        for version, who in (("1", "alice"), ("2", "bob")):
            _staged(s, version)
            promote(s.registry, s.cfg, version, Identity(username=who), "setup", **signed_parts())
        _staged(s, "3")
        assert s.champion() == "2"
        yield s


@pytest.fixture
def unchanged(store):
    """The test must leave the champion and the trail's head where they were (nothing moved,
    nothing laundered); MLOPS_POLICY and tags it sets are undone."""
    before, head = store.champion(), len(store.trail().records())
    with pytest.MonkeyPatch.context() as mp:
        store.mp, outer = mp, store.mp
        yield store
        store.mp = outer
    assert store.champion() == before
    added = [r["action"] for r in store.trail().records()[head:]]
    assert not {"promoted", "rolled-back", "promotion-intent", "rollback-intent"} & set(added)


def cli(*args: str):
    return runner.invoke(app, list(args))


def promote_with_tag(store: Store, tag: str, value: str, who: str):
    """`mlops promote gov 3 --as who` while v3's tag says `value` (then put back)."""
    reg = store.registry
    before = reg.require_version("gov", "3").tags.get(tag)
    reg.client.set_model_version_tag("gov", "3", tag, value)
    try:
        return cli("promote", "gov", "3", "--as", who)
    finally:
        if before is None:
            reg.client.delete_model_version_tag("gov", "3", tag)
        else:
            reg.client.set_model_version_tag("gov", "3", tag, before)


@pytest.mark.slow  # a whole deploy flow with its staging server: make test runs it, test-fast not
def test_a_yaml_path_with_approval_none_trains_and_stages_but_never_promotes(store):
    """Attack: `mlops run other.yaml` (same name, approval: none) promoted with no approver."""
    other = store.home / "elsewhere" / "other.yaml"
    other.parent.mkdir()
    other.write_text(config_yaml(name="gov", n_trials=5) + textwrap.dedent("""\
        deploy:
          staging: {smoke: {max_latency_ms: 2000}}
          production: {approval: none}
        """))
    result = cli("run", str(other))
    assert result.exit_code == 0, result.output
    assert "trained from a YAML path, which never promotes" in result.output
    assert store.champion() == "2"
    assert "promoted" not in store.actions()[-3:]
    # put staging back on v3 for the tests below (v4 is now the newest version)
    _staged(store, "3")


def test_another_config_dir_cannot_loosen_the_policy(unchanged, tmp_path):
    """Attack: `MLOPS_CONFIG_DIR=elsewhere mlops promote fraud 3 --as root` promoted
    with an unlisted, declared approver (the policy had no approval keys)."""
    unchanged.policy(approvers=["alice", "bob"])
    (tmp_path / "gov.yaml").write_text(config_yaml(name="gov") + "deploy:\n  production: "
                                       "{approval: none}\n")
    unchanged.mp.setenv("MLOPS_CONFIG_DIR", str(tmp_path))
    result = cli("promote", "gov", "3", "--as", "root")
    assert result.exit_code == 2, result.output
    assert "root may not approve gov (approvers: alice, bob)" in result.output


def test_a_rewritten_builder_tag_is_refused_and_named(unchanged):
    """Attack: rewrite `built_by` and the builder approves her own version."""
    result = promote_with_tag(unchanged, "built_by", "erin", "dave")
    assert result.exit_code == 2, result.output
    assert "tag built_by='erin' was edited after registration (sealed: 'dave')" in result.output
    # and with the tag as sealed, four eyes reads the sealed builder
    result = cli("promote", "gov", "3", "--as", "dave")
    assert result.exit_code == 2 and "four eyes: dave built it" in result.output


def _reseal(trail: AuditTrail, sealed: dict[str, str], **facts: str) -> None:
    """A `registered` record like `sealed`, with these facts (as the pipeline writes one)."""
    from tasks.core.sealed import FACT

    trail.write(AuditEvent.from_record({**{k: v for k, v in sealed.items() if k.startswith(FACT) or k in (
        "action", "environment", "to_version", "actor")},
        **{f"{FACT}{k}": v for k, v in facts.items()}}))


def test_a_version_with_no_builder_identity_never_reaches_production(unchanged):
    """Attack: with USER/LOGNAME unset no `built_by` was written, and the builder approved."""
    trail = unchanged.trail()
    sealed = next(r for r in reversed(trail.events()) if r["action"] == "registered"
                  and r["to_version"] == "3")
    _reseal(trail, sealed, built_by="")  # what registration seals when nobody is known
    reg = unchanged.registry
    reg.client.delete_model_version_tag("gov", "3", "built_by")
    try:
        result = cli("promote", "gov", "3", "--as", "alice")
    finally:
        reg.client.set_model_version_tag("gov", "3", "built_by", "dave")
        _reseal(trail, sealed)
    assert result.exit_code == 2, result.output
    assert "nobody is recorded as having built this version" in result.output


def test_a_check_written_as_a_tag_counts_for_nothing(unchanged):
    """Attack: `check.security_scan=passed` as a version tag satisfied the policy."""
    import yaml

    text = yaml.safe_load(POLICY.read_text())
    text["environments"]["production"]["checks"].append("security_scan")
    path = unchanged.home / "policy-scan.yaml"
    path.write_text(yaml.safe_dump(text))
    unchanged.mp.setenv("MLOPS_POLICY", str(path))
    result = promote_with_tag(unchanged, "check.security_scan", "passed", "alice")
    assert result.exit_code == 2, result.output
    assert "check 'security_scan' has not passed (not recorded" in result.output


def test_a_relabelled_classification_is_refused(unchanged):
    """Attack: a `secret` version relabelled `internal` passed staging and promotion."""
    result = promote_with_tag(unchanged, "classification", "public", "alice")
    assert result.exit_code == 2, result.output
    assert "tag classification='public' was edited after registration (sealed: 'internal')" \
        in result.output


def test_an_alias_moved_outside_the_pipeline_is_refused_everywhere_then_realigned(unchanged):
    """Attack: a plain MLflow client moves @champion; score, monitor and status served it, and
    the next promote or rollback laundered it into the signed chain."""
    batch = unchanged.home / "batch.parquet"
    assert cli("generate", "--rows", "300", "--output", str(batch)).exit_code == 0
    unchanged.registry.client.set_registered_model_alias("gov", "champion", "1")
    try:
        for args in (("score", "gov", "--input", str(batch), "--output",
                      str(unchanged.home / "scores.parquet")),
                     ("monitor", "gov", "--input", str(batch)),
                     ("status", "gov"),
                     ("promote", "gov", "3", "--as", "alice"),
                     ("rollback", "gov", "--as", "alice")):
            result = cli(*args)
            assert result.exit_code == 2, (args, result.output)
            assert "gov@champion points at v1 but the signed trail says v2" in result.output, args
        assert not (unchanged.home / "scores.parquet").exists()
    finally:
        result = cli("audit", "realign", "gov", "--as", "alice", "--comment", "moved by hand")
    assert result.exit_code == 0, result.output
    assert "gov@champion: v1 -> v2" in result.output
    assert unchanged.actions()[-1] == "alias-realigned"
    verify = cli("audit", "verify", "gov")
    assert verify.exit_code == 0, verify.output


def test_rollback_never_leaves_production_without_a_champion(store):
    """Attack: `mlops rollback` of the only champion printed "v1 -> none" and exited 0."""
    assert cli("rollback", "gov", "1", "--as", "alice").exit_code == 0
    try:
        result = cli("rollback", "gov", "--as", "alice")
        assert result.exit_code == 1, result.output
        assert "v1 is the first champion of gov" in result.output
        assert store.champion() == "1"
    finally:
        back = cli("rollback", "gov", "2", "--as", "bob")
    assert back.exit_code == 0, back.output
    assert store.champion() == "2"


def test_an_old_or_former_version_is_never_offered_as_a_promotion(unchanged):
    """Attack: a retrain on unchanged data reused v1 and asked to promote it while v2 was
    champion ("No champion yet"): approving would have rolled production back."""
    from flows.deploy import deploy_model

    head = len(unchanged.trail().records())
    result = deploy_model("gov", "1", wait=False)
    assert result.production == "not offered"
    assert "v1 was champion before: going back to it is a rollback" in result.message
    current = deploy_model("gov", "2", wait=False)
    assert current.production == "already champion"
    added = [r["action"] for r in unchanged.trail().records()[head:]]
    assert "approval-requested" not in added and "staged" not in added
    promoted = cli("promote", "gov", "1", "--as", "alice")
    assert promoted.exit_code == 2 and "mlops rollback gov 1" in promoted.output


def test_the_policy_can_require_two_approvers(unchanged):
    unchanged.policy(min_approvals=2)
    result = cli("promote", "gov", "3", "--as", "alice")
    assert result.exit_code == 2, result.output
    assert "gov needs 2 distinct approvers, v3 has 1 (alice)" in result.output


def test_no_key_no_production_change_on_a_shared_store(unchanged):
    """Attack: `promote` without MLOPS_AUDIT_KEY moved production and then blocked rollbacks."""
    from tasks.release.production import promote

    unchanged.mp.setattr(Settings, "store_is_local", property(lambda self: False))
    unchanged.mp.delenv("MLOPS_AUDIT_KEY", raising=False)
    with pytest.raises(ConfigError, match="no production change of gov without MLOPS_AUDIT_KEY"):
        promote(unchanged.registry, unchanged.cfg, "3", Identity(username="alice"), **signed_parts())


def test_in_gitlab_ci_production_moves_only_on_a_protected_ref(unchanged):
    unchanged.mp.setenv("GITLAB_CI", "true")
    unchanged.mp.setenv("CI_COMMIT_REF_NAME", "feature-x")
    unchanged.mp.setenv("CI_COMMIT_REF_PROTECTED", "false")
    result = cli("promote", "gov", "3", "--as", "alice")
    assert result.exit_code == 2, result.output
    assert "run only on protected refs (feature-x is not protected)" in result.output


def test_the_intent_names_the_policy_and_config_it_was_judged_by(store):
    """Last: promotes v3 for real, with the hashes of what judged it in its intent record."""
    from tasks.core.policy_config import load_policy

    result = cli("promote", "gov", "3", "--as", "alice")
    assert result.exit_code == 0, result.output
    intent = [r for r in store.trail().events() if r["action"] == "promotion-intent"][-1]
    assert intent["policy_sha256"] == load_policy(POLICY).sha256
    assert intent["config_sha256"] == store.cfg.config_hash()
    history = cli("history", "gov")
    assert intent["policy_sha256"][:12] in history.output


def test_trail_mismatch_is_an_input_error():
    assert TrailMismatch.exit_code == 2 and PolicyRefused.exit_code == 2 == ApprovalError.exit_code


def test_a_writer_without_the_key_registers_nothing_in_a_signed_trail(unchanged, tmp_path):
    """An unsigned record would break a signed chain (and block every release until repaired):
    a keyless training refuses before it creates a version, so nothing is half-registered."""
    from flows.training import training_pipeline

    (tmp_path / "gov.yaml").write_text(config_yaml(name="gov", n_trials=6, extra=DEPLOY))
    unchanged.mp.setenv("MLOPS_CONFIG_DIR", str(tmp_path))
    unchanged.mp.setattr(Settings, "store_is_local", property(lambda self: False))
    unchanged.mp.delenv("MLOPS_AUDIT_KEY", raising=False)
    before = len(unchanged.registry.versions("gov"))
    with pytest.raises(ConfigError, match="signed audit trail of gov"):
        training_pipeline("gov")
    assert len(unchanged.registry.versions("gov")) == before
