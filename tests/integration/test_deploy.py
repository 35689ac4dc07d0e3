"""Deploy stage with a real MLflow scoring server: staging, approval policy, promotion, rollback,
the hash-chained audit trail and what tampering with it shows."""

from __future__ import annotations

import datetime as dt

import mlflow
import pytest
from typer.testing import CliRunner

from flows.training import training_pipeline
from mlops.cli import app
from tasks.adapters.audit_trail import AuditTrail, event
from tasks.adapters.registries import open_registry
from tasks.contracts.release import Identity
from tasks.core.config import load_config
from tasks.core.errors import ApprovalError, DeployError, MlopsError, UnknownVersion
from tasks.core.settings import Settings
from tasks.release.production import promote, rollback
from tasks.release.staging import deploy_staging
from tests.conftest import config_yaml, release_parts, signed_parts, trail_here
from tests.integration.conftest import HomeSnapshot, point_at

# whole training or deploy flows per test: `make test` runs this module, the quick subset
# (`make test-fast`) leaves it out (docs/testing.md)
pytestmark = pytest.mark.slow

runner = CliRunner()
DEPLOY = """deploy:
  staging:
    smoke: {max_latency_ms: 2000}
  production:
    approvers: [alice, bob, carol]
    approval_timeout_h: 0.0006
    freeze:
      - {start: "2030-12-20", end: "2031-01-03", reason: year-end}
"""
ALICE, BOB, CAROL = (Identity(username=n) for n in ("alice", "bob", "carol"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Model `dep` with two registered versions (v1, v2), both staged, built by `dave`: trained
    once per module, each test starts from a copy restored in place (HomeSnapshot)."""
    snapshot = HomeSnapshot(tmp_path_factory.mktemp("deploy") / "home")
    with pytest.MonkeyPatch.context() as mp:
        point_at(snapshot.base, mp)
        mp.setenv("USER", "dave")
        configs = snapshot.base / "configs"
        (configs / "dep.yaml").write_text(config_yaml(name="dep", extra=DEPLOY))
        training_pipeline("dep")
        (configs / "dep.yaml").write_text(config_yaml(name="dep", n_trials=3, extra=DEPLOY))
        training_pipeline("dep")
        reg = open_registry(Settings.from_env())
        cfg = load_config("dep", Settings.from_env().config_dir)
        for version in ("1", "2"):
            staged(reg, cfg, version)
        snapshot.take()
    return snapshot


@pytest.fixture
def model(trained, home, registry, monkeypatch):
    """The trained module's store as it was after staging, in this test's environment."""
    trained.restore()
    point_at(trained.base, monkeypatch)
    monkeypatch.setenv("USER", "dave")
    return registry(), load_config("dep", Settings.from_env().config_dir)


def staged(reg, cfg, version: str) -> None:
    """The record a passed staging writes (serving the model is tested on its own below)."""
    digest = reg.require_manifest(cfg.name, version)
    reg.move_alias(cfg.name, "staging", version)
    trail(reg, cfg).write(event("staged", "staging", None, version, "pipeline",
                                alias="staging", digest=digest))


def trail(reg, cfg) -> AuditTrail:
    return trail_here(reg, cfg.name)


def actions(reg, cfg):
    return [(e["action"], e.get("from_version", ""), e.get("to_version", ""))
            for e in trail(reg, cfg).events()
            if e["action"] not in ("registered", "challenger", "staged")]


def test_run_with_upfront_approval_reaches_champion(write_config, registry):
    name = write_config("full", extra=DEPLOY)
    result = runner.invoke(app, ["run", name, "--as", "alice", "--comment", "ok"])
    assert result.exit_code == 0, result.output
    assert "production approval given up front by alice (declared, unverified)" in result.stdout
    assert "promoted by alice" in result.stdout
    reg = registry()
    assert reg.alias_version(name, "champion") == "1" == reg.alias_version(name, "staging")
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert len(model.predict(model.input_example)) == len(model.input_example)
    cfg = load_config(name, Settings.from_env().config_dir)
    assert [e["action"] for e in trail(reg, cfg).events()] == [
        "registered", "challenger", "staged", "promotion-intent", "promoted"]

    history = runner.invoke(app, ["history", name])
    assert history.exit_code == 0 and "promoted" in history.stdout
    assert "alice (declared, unverified)" in history.stdout
    verify = runner.invoke(app, ["audit", "verify", name])
    assert verify.exit_code == 0, verify.output
    assert "5 record(s) intact" in verify.stdout and "@champion v1" in verify.stdout


def test_run_without_approver_stops_after_staging(write_config, registry):
    name = write_config("wait", extra=DEPLOY)
    # no PREFECT_API_URL of the user's: nobody could answer a pause, so the run stops
    result = runner.invoke(app, ["run", name])
    assert result.exit_code == 0, result.output
    assert f"mlops promote {name} 1 --as NAME" in result.stdout
    reg = registry()
    assert reg.alias_version(name, "staging") == "1"
    assert reg.alias_version(name, "champion") is None
    refused = runner.invoke(app, ["promote", name, "1", "--as", "mallory"])
    assert refused.exit_code == 2 and "mallory may not approve" in refused.stderr
    yaml_path = runner.invoke(app, ["promote", f"configs/{name}.yaml", "1",
                                    "--as", "bob"])
    assert yaml_path.exit_code == 2 and "not a YAML path" in yaml_path.stderr
    assert reg.alias_version(name, "champion") is None
    ok = runner.invoke(app, ["promote", name, "1", "--as", "bob"])
    assert ok.exit_code == 0, ok.output
    assert reg.alias_version(name, "champion") == "1"


def test_unlisted_approver_up_front_is_refused_and_recorded(write_config, registry):
    name = write_config("unlisted", extra=DEPLOY)
    result = runner.invoke(app, ["run", name, "--as", "mallory"])
    assert result.exit_code == 2
    assert "mallory may not approve unlisted" in result.stderr
    reg = registry()
    assert reg.alias_version(name, "champion") is None
    cfg = load_config(name, Settings.from_env().config_dir)
    assert actions(reg, cfg)[-1] == ("promotion-refused", "", "1")


def test_the_author_may_not_approve(model):
    reg, cfg = model
    bob_built_it = cfg.model_copy(update={"deploy": cfg.deploy.model_copy(update={
        "production": cfg.deploy.production.model_copy(update={"approvers": ["dave", "bob"]})})})
    with pytest.raises(ApprovalError, match="four eyes: dave built it"):
        promote(reg, bob_built_it, "1", Identity(username="dave"), **signed_parts())
    assert reg.alias_version(cfg.name, "champion") is None
    assert actions(reg, cfg)[-1] == ("promotion-refused", "", "1")
    promote(reg, bob_built_it, "1", BOB, **signed_parts())
    assert reg.alias_version(cfg.name, "champion") == "1"


def test_an_unstaged_or_changed_version_is_not_promoted(write_config, registry, model):
    reg, cfg = model
    name = write_config("fresh", extra=DEPLOY)
    training_pipeline(name)
    fresh = load_config(name, Settings.from_env().config_dir)
    with pytest.raises(ApprovalError, match="v1 has not passed staging"):
        promote(reg, fresh, "1", ALICE, **signed_parts())
    staged(reg, cfg, "2")
    trail(reg, cfg).write(event("staged", "staging", None, "2", "pipeline", alias="staging",
                                digest="0" * 64))  # staged, but other files than v2 has now
    with pytest.raises(ApprovalError, match="files changed since it was staged"):
        promote(reg, cfg, "2", ALICE, **signed_parts())
    assert reg.alias_version(cfg.name, "champion") is None


def test_promotion_in_a_freeze_window_is_refused(model):
    reg, cfg = model
    promote(reg, cfg, "1", ALICE, **signed_parts())
    with pytest.raises(DeployError, match=r"refused: freeze window 2030-12-20..2031-01-03"):
        promote(reg, cfg, "2", ALICE, today=dt.date(2030, 12, 24), **signed_parts())
    assert reg.alias_version(cfg.name, "champion") == "1"
    assert actions(reg, cfg)[-1] == ("promotion-refused", "1", "2")


def test_version_that_does_not_exist(model):
    reg, cfg = model
    with pytest.raises(UnknownVersion, match="has no version 9"):
        promote(reg, cfg, "9", ALICE, **signed_parts())
    assert reg.alias_version(cfg.name, "champion") is None


def test_failed_post_deploy_check_rolls_back_automatically(model):
    reg, cfg = model
    promote(reg, cfg, "1", ALICE, **signed_parts())

    def broken(registry, cfg, version):
        raise RuntimeError("predictions drifted from staging")

    with pytest.raises(DeployError, match="rolled back to v1"):
        promote(reg, cfg, "2", BOB, checks=broken, **signed_parts())
    assert reg.alias_version(cfg.name, "champion") == "1"
    assert actions(reg, cfg)[-2:] == [("promotion-intent", "1", "2"), ("rolled-back", "2", "1")]


def test_manual_rollback_only_to_a_former_champion(model):
    reg, cfg = model
    promote(reg, cfg, "1", ALICE, **signed_parts())
    promote(reg, cfg, "2", BOB, comment="better f1", **signed_parts())
    result = runner.invoke(app, ["rollback", cfg.name, "--as", "carol", "--comment", "incident"])
    assert result.exit_code == 0, result.output
    assert "v2 -> v1" in result.stdout
    assert reg.alias_version(cfg.name, "champion") == "1"
    with pytest.raises(DeployError, match="v1 is the first champion of dep: rolling it back "
                                          "would leave production with no champion"):
        rollback(reg, cfg, CAROL, **release_parts())
    assert reg.alias_version(cfg.name, "champion") == "1"
    assert [a for a in actions(reg, cfg) if not a[0].endswith("intent")] == [
        ("promoted", "", "1"), ("promoted", "1", "2"), ("rolled-back", "2", "1"),
        ("rollback-refused", "1", "")]


def test_rollback_refuses_a_never_champion_an_unknown_version_and_freezes(model):
    reg, cfg = model
    promote(reg, cfg, "1", ALICE, **signed_parts())
    with pytest.raises(UnknownVersion, match="has no version 7"):
        rollback(reg, cfg, CAROL, to_version="7", **release_parts())
    with pytest.raises(DeployError, match="v2 was never champion"):
        rollback(reg, cfg, CAROL, to_version="2", **release_parts())
    promote(reg, cfg, "2", ALICE, **signed_parts())
    with pytest.raises(DeployError, match="freeze window"):
        rollback(reg, cfg, CAROL, to_version="1", today=dt.date(2031, 1, 2), **release_parts())
    assert rollback(reg, cfg, CAROL, to_version="1", **release_parts()) == ("2", "1")
    assert reg.alias_version(cfg.name, "champion") == "1"
    assert actions(reg, cfg)[-3][0] == "rollback-refused"


def test_an_interrupted_promotion_is_finished_by_the_next_command(model):
    """What a crash between the alias move and the checks leaves: an intent with no completion.
    The next promotion first completes it (its checks pass now), and says so in the trail."""
    reg, cfg = model
    promote(reg, cfg, "1", ALICE, **signed_parts())
    trail(reg, cfg).write(event("promotion-intent", "production", "1", "2", "bob",
                                alias="champion"))
    reg.move_alias(cfg.name, "champion", "2")  # ... and the process died here
    verify = runner.invoke(app, ["audit", "verify", cfg.name])
    assert verify.exit_code == 1 and "was started but not finished" in verify.stderr
    with pytest.raises(ApprovalError, match="v1 was champion before"):  # any production
        promote(reg, cfg, "1", ALICE, today=dt.date(2030, 12, 24),  # command recovers
                **signed_parts())
    completed = trail(reg, cfg).events()[-2]
    assert completed["action"] == "promoted" and "completed after" in completed["reason"]
    assert reg.alias_version(cfg.name, "champion") == "2"
    assert runner.invoke(app, ["audit", "verify", cfg.name]).exit_code == 0


def test_tampering_with_the_trail_shows(model):
    reg, cfg = model
    promote(reg, cfg, "1", ALICE, **signed_parts())
    promote(reg, cfg, "2", BOB, **signed_parts())
    assert runner.invoke(app, ["audit", "verify", cfg.name]).exit_code == 0
    client = reg.client
    audit = client.get_experiment_by_name(f"audit/{cfg.name}").experiment_id
    runs = {r.data.params["seq"]: r for r in client.search_runs([audit])}
    intent = min((r for r in runs.values() if r.data.params["action"] == "promotion-intent"),
                 key=lambda r: int(r.data.params["seq"]))
    # a forged record dated in the future, claiming v1 is the newest promotion
    forged = client.create_run(audit).info.run_id
    for key, value in {"seq": str(len(runs) + 1), "action": "promoted", "to_version": "1",
                       "from_version": "2", "alias": "champion", "prev_hash": "x" * 64,
                       "hash": "y" * 64, "at": "2999-01-01T00:00:00+00:00"}.items():
        client.log_param(forged, key, value)
    verify = runner.invoke(app, ["audit", "verify", cfg.name])
    assert verify.exit_code == 1
    assert "dated in the future" in verify.stderr and "altered" in verify.stderr
    history = runner.invoke(app, ["history", cfg.name])
    assert "IS NOT INTACT" in history.stderr
    # nothing is changed on a broken trail: the forged record cannot pick the rollback target
    with pytest.raises(MlopsError, match="audit trail of dep is not intact"):
        rollback(reg, cfg, CAROL, **release_parts())
    assert reg.alias_version(cfg.name, "champion") == "2"
    # a deleted record, and an alias moved outside the pipeline
    client.delete_run(intent.info.run_id)
    reg.move_alias(cfg.name, "champion", "2")
    verify = runner.invoke(app, ["audit", "verify", cfg.name])
    seq = intent.data.params["seq"]
    assert f"record {seq} (promotion-intent): deleted from the store" in verify.stderr
    assert f"record {seq} (promotion-intent): altered" not in verify.stderr
    assert "moved outside the pipeline" in verify.stderr
    # the whole trail deleted: verify says so and nothing is released until it is back
    client.delete_experiment(audit)
    verify = runner.invoke(app, ["audit", "verify", cfg.name])
    assert verify.exit_code == 1 and "was deleted" in verify.stderr
    with pytest.raises(MlopsError, match="was deleted"):
        promote(reg, cfg, "1", ALICE, **signed_parts())


def test_smoke_test_failure_restores_staging(model):
    reg, cfg = model
    deploy_staging(reg, cfg, "1", "alice", **release_parts())
    strict = cfg.model_copy(update={"deploy": cfg.deploy.model_copy(update={
        "staging": cfg.deploy.staging.model_copy(update={
            "smoke": cfg.deploy.staging.smoke.model_copy(update={"max_latency_ms": 0.001})})})})
    with pytest.raises(DeployError, match="smoke test failed: p95 latency"):
        deploy_staging(reg, strict, "2", "alice", **release_parts())
    assert reg.alias_version(cfg.name, "staging") == "1"
    assert trail(reg, cfg).events()[-1]["action"] == "staging-failed"


def test_model_server_that_fails_to_start(model, tmp_path):
    reg, cfg = model
    from tasks.release.serving import start_model_server

    def bad_server(uri, timeout, log, env):
        return start_model_server(str(tmp_path / "no-such-model"), timeout, log, env)

    before = reg.alias_version(cfg.name, "staging")
    with pytest.raises(DeployError, match="failed to start"):
        deploy_staging(reg, cfg, "1", "alice", server_factory=bad_server, **release_parts())
    assert reg.alias_version(cfg.name, "staging") == before
    assert reg.alias_version(cfg.name, "champion") is None
    last = trail(reg, cfg).events()[-1]
    assert last["action"] == "staging-failed" and "failed to start" in last["reason"]


def test_approval_timeout_ends_without_promotion(model):
    from flows.deploy import deploy_model

    reg, cfg = model
    with pytest.raises(MlopsError, match="no approval within"):
        deploy_model(cfg.name, "1")  # approval_timeout_h 0.0006 = about 2 s
    assert reg.alias_version(cfg.name, "champion") is None
    assert [a for a, _, _ in actions(reg, cfg)][-2:] == ["approval-requested", "approval-timeout"]
