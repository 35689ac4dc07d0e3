"""`mlops status` on a local MLflow store without a Prefect server, and the local stack's
settings and state files (the servers themselves: tests/e2e/test_local_stack.py)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mlops.cli import app
from tests.conftest import config_yaml

runner = CliRunner()


@pytest.fixture
def home(tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "tiny.yaml").write_text(config_yaml(name="tiny"))
    (configs / "other.yaml").write_text(config_yaml("regression", name="other"))
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("MLOPS_CONFIG_DIR", str(configs))
    for name in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "MLOPS_MLFLOW_UI_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _store(home) -> None:
    """tiny: v1 champion, v2 staging and challenger; one finished training run."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'state' / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("tiny", artifact_location=(home / "art").as_uri())
    run = client.create_run(experiment, run_name="tiny-1")
    client.log_metric(run.info.run_id, "test_roc_auc", 0.8765)
    client.log_metric(run.info.run_id, "gate_passed", 1.0)
    client.set_terminated(run.info.run_id, "FINISHED")
    client.create_registered_model("tiny")
    for value in ("0.81", "0.8765"):
        client.create_model_version("tiny", str(home / "art"), run_id=run.info.run_id,
                                    tags={"gate_metric": "roc_auc", "gate_value": value})
    client.set_registered_model_alias("tiny", "champion", "1")
    client.set_registered_model_alias("tiny", "staging", "2")
    client.set_registered_model_alias("tiny", "challenger", "2")
    _record(("promoted", "champion", "1"), ("staged", "staging", "2"),
            ("challenger", "challenger", "2"))


def _record(*moves: tuple[str, str, str]) -> None:
    """The trail's records of those alias moves (what the pipeline writes as it moves them)."""
    from tasks.adapters.audit_trail import AuditTrail, event
    from tasks.adapters.registries import open_registry
    from tasks.core.settings import Settings

    settings = Settings.from_env()
    trail = AuditTrail(open_registry(settings), "tiny", settings=settings,
                       key=settings.resolve_audit_key())
    for action, alias, version in moves:
        trail.write(event(action, "test", None, version, "pipeline", alias=alias))


def test_status_json_has_aliases_last_runs_and_says_prefect_is_unknown(home):
    _store(home)
    result = runner.invoke(app, ["status", "--json", "--prefect-file", str(home / "none.yaml")])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["prefect"] is None and out["tracking_uri"] == "local store"
    models = {m["model"]: m for m in out["models"]}
    assert set(models) == {"tiny", "other"}
    tiny = models["tiny"]
    assert [(a["alias"], a["version"], a["value"]) for a in tiny["aliases"]] == [
        ("champion", "1", "0.81"), ("staging", "2", "0.8765"), ("challenger", "2", "0.8765")]
    assert tiny["pending"] is None  # unknown without a Prefect server, not "none"
    (training,) = tiny["last"]
    assert training["kind"] == "training" and training["outcome"] == "FINISHED"
    assert training["detail"] == "roc_auc 0.8765, gate passed"
    assert [a["version"] for a in models["other"]["aliases"]] == [None, None, None]
    assert models["other"]["last"] == []


def test_status_text_for_one_model_names_what_needs_a_server(home):
    _store(home)
    result = runner.invoke(app, ["status", "tiny"])
    assert result.exit_code == 0, result.output
    assert "== tiny: @champion v1 (roc_auc 0.8100), @staging v2" in result.stdout
    assert "pending approvals: unknown, no Prefect server" in result.stdout
    assert "other" not in result.stdout
    assert "(prefect.yaml)" in result.stdout or "next:" not in result.stdout


def test_status_of_an_unknown_model_is_one_line_and_exit_2(home):
    result = runner.invoke(app, ["status", "nope"])
    assert result.exit_code == 2
    assert "error:" in result.output and "Traceback" not in result.output


def test_version_flag_prints_the_package_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("prefect-mlops ")


def test_stack_ports_come_from_settings_and_are_checked():
    from mlops.stack import services
    from tasks.core.errors import ConfigError
    from tasks.core.settings import Settings

    found = Settings.from_env({"MLOPS_HOME": "/tmp/x", "MLOPS_PREFECT_PORT": "14201",
                               "MLOPS_MLFLOW_PORT": "15001"})
    prefect, mlflow = services(found, {"PREFECT_API_URL": "http://elsewhere/api"})
    assert prefect.url == "http://127.0.0.1:14201" and "14201" in prefect.command
    assert "PREFECT_API_URL" not in prefect.env  # the server is not a client of another one
    assert prefect.env["PREFECT_UI_API_URL"] == "http://127.0.0.1:14201/api"
    assert mlflow.health == "http://127.0.0.1:15001/health"
    http = Settings.from_env({"MLOPS_HOME": "/tmp/x", "MLFLOW_TRACKING_URI": "http://ml:5000"})
    assert [s.name for s in services(http, {})] == ["prefect"]  # their server is the MLflow UI
    assert http.mlflow_ui_url == "http://ml:5000"
    with pytest.raises(ConfigError, match="MLOPS_PREFECT_PORT"):
        Settings.from_env({"MLOPS_PREFECT_PORT": "http"})


def test_a_stale_or_missing_stack_file_means_no_stack(tmp_path):
    from mlops.stack import services as stack_services
    from mlops.stack import state
    from tasks.adapters.stack_state import read_state
    from tasks.core.settings import Settings

    assert read_state(tmp_path) is None
    (tmp_path / "stack.json").write_text(json.dumps({"prefect_api_url": "http://127.0.0.1:9/api"}))
    assert read_state(tmp_path) is None  # nothing answers there
    found = Settings.from_env({"MLOPS_HOME": str(tmp_path)})
    prefect = stack_services(found, {})[0]
    found.stack_dir.mkdir(parents=True)
    prefect.pid_file(found.stack_dir).write_text("1\n")  # pid 1 is not our server
    assert state(prefect, found.stack_dir).pid is None


@pytest.mark.parametrize(("command", "new", "old"), [
    (["run"], "--as", "--approve-as"), (["rollback"], "version", "--to"),
    (["rollback"], "version", "--version"), (["promote"], "version", "--version"),
    (["compliance"], "version", "--version"), (["reproduce"], "version", "--version")])
def test_options_have_one_name_and_the_old_spelling_still_parses(home, command, new, old):
    shown = runner.invoke(app, [*command, "--help"]).stdout
    assert new in shown and old not in shown and "Exit codes" in " ".join(shown.split())
    result = runner.invoke(app, [*command, "nope", old, "x"])
    assert result.exit_code == 2
    assert "No such option" not in result.output and "nope" in result.output


def test_status_refuses_an_alias_moved_outside_the_pipeline_after_showing_it(home):
    """Attack (issue 21): a plain MLflow client moves @champion; status names both versions
    and the repair, and exits 2 instead of showing the move as production."""
    from mlflow import MlflowClient

    _store(home)
    uri = f"sqlite:///{home / 'state' / 'mlflow.db'}"
    MlflowClient(uri, registry_uri=uri).set_registered_model_alias("tiny", "champion", "2")
    result = runner.invoke(app, ["status", "tiny", "--prefect-file", str(home / "none.yaml")])
    assert result.exit_code == 2, result.output
    assert "tiny@champion points at v2 but the signed trail says v1" in result.output
    assert "mlops audit realign tiny" in result.output
