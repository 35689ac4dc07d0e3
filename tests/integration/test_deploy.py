"""Deploy stage with a real MLflow scoring server: staging, promotion, rollback, audit trail."""

from __future__ import annotations

import datetime as dt

import mlflow
import pytest
from typer.testing import CliRunner

from flows.training import training_pipeline
from mlops.cli import app
from tasks.core.config import load_config
from tasks.core.errors import DeployError, MlopsError, UnknownVersion
from tasks.core.settings import Settings
from tasks.release.promotion import promote
from tasks.release.rollback import rollback
from tasks.release.staging import deploy_staging

runner = CliRunner()
DEPLOY = """deploy:
  staging:
    smoke: {max_latency_ms: 2000}
  production:
    approvers: [alice, bob]
    approval_timeout_h: 0.0006
    freeze:
      - {start: "2030-12-20", end: "2031-01-03", reason: year-end}
"""


@pytest.fixture
def model(write_config, registry):
    """A model with two registered versions (v1, v2) and the config that knows it."""
    name = write_config("dep", extra=DEPLOY)
    training_pipeline(name)
    write_config("dep", n_trials=3, extra=DEPLOY)
    training_pipeline(name)
    reg = registry()
    return reg, load_config(name, Settings.from_env().config_dir)


def actions(reg, name):
    return [(e["action"], e.get("from_version", ""), e.get("to_version", ""))
            for e in reg.events(name)]


def test_run_with_upfront_approval_reaches_champion(write_config, registry):
    name = write_config("full", extra=DEPLOY)
    result = runner.invoke(app, ["run", name, "--approve-as", "alice", "--comment", "ok"])
    assert result.exit_code == 0, result.output
    assert "production approval given up front by alice" in result.stdout
    assert "promoted by alice" in result.stdout
    reg = registry()
    assert reg.alias_version(name, "champion") == "1" == reg.alias_version(name, "staging")
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert len(model.predict(model.input_example)) == len(model.input_example)
    assert [a for a, _, _ in actions(reg, name)] == ["staged", "promoted"]

    history = runner.invoke(app, ["history", name])
    assert history.exit_code == 0 and "promoted" in history.stdout and "alice" in history.stdout


def test_run_without_approver_stops_after_staging(write_config, registry):
    name = write_config("wait", extra=DEPLOY)
    # no PREFECT_API_URL of the user's: nobody could answer a pause, so the run stops
    result = runner.invoke(app, ["run", name])
    assert result.exit_code == 0, result.output
    assert f"mlops promote {name} --version 1 --as NAME" in result.stdout
    reg = registry()
    assert reg.alias_version(name, "staging") == "1"
    assert reg.alias_version(name, "champion") is None
    refused = runner.invoke(app, ["promote", name, "--version", "1", "--as", "mallory"])
    assert refused.exit_code == 2 and "mallory may not approve" in refused.stderr
    assert reg.alias_version(name, "champion") is None
    ok = runner.invoke(app, ["promote", name, "--version", "1", "--as", "bob"])
    assert ok.exit_code == 0, ok.output
    assert reg.alias_version(name, "champion") == "1"


def test_unlisted_approver_up_front_is_refused(write_config, registry):
    name = write_config("unlisted", extra=DEPLOY)
    result = runner.invoke(app, ["run", name, "--approve-as", "mallory"])
    assert result.exit_code == 2
    assert "mallory may not approve unlisted" in result.stderr
    assert registry().alias_version(name, "champion") is None


def test_promotion_in_a_freeze_window_is_refused(model):
    reg, cfg = model
    promote(reg, cfg, "1", "alice")
    with pytest.raises(DeployError, match=r"refused: freeze window 2030-12-20..2031-01-03"):
        promote(reg, cfg, "2", "alice", today=dt.date(2030, 12, 24))
    assert reg.alias_version(cfg.name, "champion") == "1"
    assert actions(reg, cfg.name)[-1] == ("promotion-refused", "1", "2")


def test_version_that_does_not_exist(model):
    reg, cfg = model
    with pytest.raises(UnknownVersion, match="has no version 9"):
        promote(reg, cfg, "9", "alice")
    assert reg.alias_version(cfg.name, "champion") is None


def test_failed_post_deploy_check_rolls_back_automatically(model):
    reg, cfg = model
    promote(reg, cfg, "1", "alice")

    def broken(registry, cfg, version):
        raise RuntimeError("predictions drifted from staging")

    with pytest.raises(DeployError, match="rolled back to v1"):
        promote(reg, cfg, "2", "bob", checks=broken)
    assert reg.alias_version(cfg.name, "champion") == "1"
    assert actions(reg, cfg.name)[-2:] == [("promoted", "1", "2"), ("rolled-back", "2", "1")]


def test_manual_rollback_and_history_keep_every_record(model):
    reg, cfg = model
    promote(reg, cfg, "1", "alice")
    promote(reg, cfg, "2", "bob", comment="better f1")
    result = runner.invoke(app, ["rollback", cfg.name, "--as", "carol", "--comment", "incident"])
    assert result.exit_code == 0, result.output
    assert "v2 -> v1" in result.stdout
    assert reg.alias_version(cfg.name, "champion") == "1"
    assert rollback(reg, cfg, "carol") == ("1", None)  # v1 was the first champion
    assert reg.alias_version(cfg.name, "champion") is None
    with pytest.raises(DeployError, match="has no champion to roll back"):
        rollback(reg, cfg, "carol")
    assert actions(reg, cfg.name) == [("promoted", "", "1"), ("promoted", "1", "2"),
                                      ("rolled-back", "2", "1"), ("rolled-back", "1", "")]


def test_rollback_to_a_named_version_and_unknown_version(model):
    reg, cfg = model
    promote(reg, cfg, "2", "alice")
    with pytest.raises(UnknownVersion, match="has no version 7"):
        rollback(reg, cfg, "carol", to_version="7")
    assert rollback(reg, cfg, "carol", to_version="1") == ("2", "1")
    assert reg.alias_version(cfg.name, "champion") == "1"


def test_smoke_test_failure_restores_staging(model):
    reg, cfg = model
    deploy_staging(reg, cfg, "1", "alice")
    strict = cfg.model_copy(update={"deploy": cfg.deploy.model_copy(update={
        "staging": cfg.deploy.staging.model_copy(update={
            "smoke": cfg.deploy.staging.smoke.model_copy(update={"max_latency_ms": 0.001})})})})
    with pytest.raises(DeployError, match="smoke test failed: p95 latency"):
        deploy_staging(reg, strict, "2", "alice")
    assert reg.alias_version(cfg.name, "staging") == "1"
    assert actions(reg, cfg.name)[-1][0] == "staging-failed"


def test_model_server_that_fails_to_start(model, tmp_path):
    reg, cfg = model
    from tasks.release.serving import start_model_server

    def bad_server(uri, timeout, log, env):
        return start_model_server(str(tmp_path / "no-such-model"), timeout, log, env)

    with pytest.raises(DeployError, match="failed to start"):
        deploy_staging(reg, cfg, "2", "alice", server_factory=bad_server)
    assert reg.alias_version(cfg.name, "staging") is None
    assert reg.alias_version(cfg.name, "champion") is None
    last = reg.events(cfg.name)[-1]
    assert last["action"] == "staging-failed" and "failed to start" in last["reason"]


def test_approval_timeout_ends_without_promotion(model):
    from flows.deploy import deploy_model

    reg, cfg = model
    with pytest.raises(MlopsError, match="no approval within"):
        deploy_model(cfg.name, "1")  # approval_timeout_h 0.0006 = about 2 s
    assert reg.alias_version(cfg.name, "champion") is None
    assert actions(reg, cfg.name)[-1] == ("approval-timeout", "", "1")
