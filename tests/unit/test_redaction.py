"""Secrets are redacted where text leaves the process: log records (every handler), client
errors, MLflow params/tags/text, Slack, GitLab notes and wiki rows; helper processes (model
servers, notebook kernels) inherit no credentials."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

from tasks.core.redact import (
    RedactFilter,
    Scrubbed,
    install_log_redaction,
    redact,
    redact_values,
    scrub,
)
from tasks.core.settings import CHILD_VARIABLES, Settings

ROOT = Path(__file__).resolve().parents[2]
SECRET = "S3cretPw"
URI = f"http://svc:{SECRET}@127.0.0.1:5000"
SECRETS = {"MLOPS_GITLAB_TOKEN": "glpat-" + SECRET, "MLFLOW_TRACKING_TOKEN": "mlf-" + SECRET,
           "SNOWFLAKE_PASSWORD": "snow-" + SECRET, "PREFECT_API_KEY": "pnu_" + SECRET,
           "AWS_SECRET_ACCESS_KEY": "aws-" + SECRET, "MLOPS_APPROVER_TOKEN": "glpat-a" + SECRET}


def test_redact_hides_credentials_and_keeps_the_rest():
    assert redact(f"{URI}/api/2.0/x failed") == "http://***@127.0.0.1:5000/api/2.0/x failed"
    assert redact(f"https://h/x.csv?access_token={SECRET}&day=1") == (
        "https://h/x.csv?access_token=***&day=1")
    assert redact(f"PRIVATE-TOKEN: {SECRET}") == "PRIVATE-TOKEN: ***"
    assert redact_values({"a": URI, "n": 3}) == {"a": "http://***@127.0.0.1:5000", "n": "3"}


def record_with_secret() -> logging.LogRecord:
    try:
        raise MlflowException(f"API request to {URI}/api/2.0/mlflow/runs/create failed")
    except MlflowException:
        exc_info = sys.exc_info()
    return logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1,
                             "tracking at %s is down", (URI,), exc_info,
                             sinfo=f"Stack (most recent call last):\n  at {URI}")


def test_the_filter_redacts_message_arguments_traceback_and_stack():
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactFilter())
    handler.handle(record_with_secret())
    text = out.getvalue()
    assert SECRET not in text
    assert "tracking at http://***@127.0.0.1:5000 is down" in text
    assert "Traceback" in text and "API request to http://***@127.0.0.1:5000" in text
    assert "at http://***@127.0.0.1:5000" in text


def test_every_handler_of_the_cli_logging_config_redacts():
    from prefect.logging.configuration import load_logging_config

    config = load_logging_config(ROOT / "mlops" / "logging.yml")
    assert config["filters"]["redact"]["()"] == "tasks.core.redact.RedactFilter"
    assert config["handlers"] and all("redact" in h.get("filters", [])
                                      for h in config["handlers"].values())


def test_the_cli_logging_config_redacts_in_a_real_process():
    """What a CLI process (or anything started with its environment) prints."""
    code = ("import logging\nfrom prefect import flow\n"
            f"logging.getLogger('mlops.x').warning('tracking %s', {URI!r})\n"
            "try:\n"
            f"    raise RuntimeError('down: {URI}')\n"
            "except RuntimeError:\n"
            "    logging.getLogger('mlops.x').exception('failed')\n")
    env = {**os.environ, "PREFECT_LOGGING_SETTINGS_PATH": str(ROOT / "mlops" / "logging.yml"),
           "MLOPS_DEBUG": "1"}  # keep the traceback: it must be redacted too
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    both = out.stdout + out.stderr
    assert out.returncode == 0, both
    assert "tracking http://***@127.0.0.1:5000" in out.stdout
    assert "RuntimeError: down: http://***@127.0.0.1:5000" in out.stdout
    assert SECRET not in both


@pytest.fixture
def configured_elsewhere():
    """A handler set up the way a worker's flow run has it: before the pull step, not from
    mlops/logging.yml; every RedactFilter installed meanwhile is removed afterwards."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("mlops.test.elsewhere")
    logger.addHandler(handler)
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for h in {h for lg in loggers if isinstance(lg, logging.Logger) for h in lg.handlers}:
        for f in [f for f in h.filters if isinstance(f, RedactFilter)]:
            h.removeFilter(f)


def test_installing_redaction_covers_handlers_configured_elsewhere(configured_elsewhere):
    logger, out = configured_elsewhere
    assert install_log_redaction() >= 1
    assert install_log_redaction() == 0  # idempotent
    logger.warning("uri %s", URI)
    assert out.getvalue() == "uri http://***@127.0.0.1:5000\n"


def test_a_workers_flow_run_redacts_from_its_pull_step_on(configured_elsewhere, tmp_path,
                                                           monkeypatch):
    from deployments.steps import enter_project

    logger, out = configured_elsewhere
    monkeypatch.chdir(tmp_path)
    enter_project(str(ROOT))
    logger.error("tracking %s unreachable", URI)
    assert out.getvalue() == "tracking http://***@127.0.0.1:5000 unreachable\n"


def test_client_errors_leave_scrubbed_with_their_type_and_code():
    class Client:
        def create_run(self):
            try:
                raise ConnectionError(f"connect to {URI} refused")
            except ConnectionError as exc:
                raise MlflowException(f"API request to {URI}/api/2.0/mlflow/runs/create "
                                      "failed", error_code=RESOURCE_DOES_NOT_EXIST) from exc

        version = "3"

    client = Scrubbed(Client())
    assert client.version == "3"
    with pytest.raises(MlflowException) as caught:
        client.create_run()
    assert caught.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert SECRET not in str(caught.value) and SECRET not in caught.value.message
    assert SECRET not in str(caught.value.__cause__)
    assert str(scrub(ValueError(URI, 3))) == "('http://***@127.0.0.1:5000', 3)"


def test_mlflow_params_tags_and_text_are_redacted(tmp_path):
    from tasks.adapters.mlflow_registry import Registry

    registry = Registry(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts")
    run_id = registry.start_run("redaction", "r", {"source": URI})
    registry.log_run(run_id, params={"data.source": f"https://h/x.csv?token={SECRET}"})
    registry.log_text(run_id, f"read from {URI}\n", "validation/report.md")
    run = registry.client.get_run(run_id)
    assert run.data.tags["source"] == "http://***@127.0.0.1:5000"
    assert run.data.params["data.source"] == "https://h/x.csv?token=***"
    text = Path(registry.client.download_artifacts(run_id, "validation/report.md",
                                                   str(tmp_path / "dl"))).read_text()
    assert text == "read from http://***@127.0.0.1:5000\n"


def test_slack_messages_are_redacted(monkeypatch):
    from prefect.blocks import notifications

    from tasks.adapters.slack import notify

    sent = []

    class Block:
        def notify(self, body, subject, _sync=True):
            sent.append(subject + "\n" + body)

    monkeypatch.setattr(notifications.SlackWebhook, "load", classmethod(lambda cls, *a, **k: Block()))
    assert notify(f"training failed at {URI}", f"MlflowException: API request to {URI} failed",
                  "alerts")
    [message] = sent
    assert SECRET not in message and message.count("http://***@127.0.0.1:5000") == 2


def test_merge_request_notes_and_wiki_rows_are_redacted():
    from tasks.adapters.gitlab import GitLab
    from tasks.core.settings import GitLabSettings
    from tests.fakes.gitlab_api import FakeGitLab

    fake = FakeGitLab(tokens={"glpat-good": ["api"]}).start()
    try:
        gl = GitLab(GitLabSettings(url=fake.url, project_id="42", token="glpat-good"),
                    sleep=lambda s: None)
        gl.upsert_note("17", "<!-- m -->", f"<!-- m -->\nMLflow run: {URI}/#/runs/1")
        gl.prepend_wiki_row("mlops/fraud", f"# fraud\n| from {URI} |", f"| {URI} | scored |")
        note = fake.notes["17"][0]["body"]
        page = fake.wikis["mlops/fraud"]["content"]
    finally:
        fake.stop()
    assert note == "<!-- m -->\nMLflow run: http://***@127.0.0.1:5000/#/runs/1"
    assert SECRET not in page and "| http://***@127.0.0.1:5000 | scored |" in page


def test_helper_processes_inherit_no_credentials():
    from tasks.training.notebook import kernel_env

    env = {"PATH": "/usr/bin", "HOME": "/home/x", "MLOPS_HOME": "/tmp/h", **SECRETS,
           "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000", "CI_JOB_TOKEN": "job-" + SECRET}
    settings = Settings.from_env(env)
    assert set(settings.child_env) == {"PATH", "HOME"} <= set(CHILD_VARIABLES)
    kernel = kernel_env(settings)
    # the kernel logs to MLflow, so it gets the tracking token and nothing else secret
    leaked = {k for k, v in kernel.items() if SECRET in v} - {"MLFLOW_TRACKING_TOKEN"}
    assert leaked == set() and kernel["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"


@pytest.mark.parametrize(("text", "shown"), [
    (f"s3://AKIAKEY:{SECRET}@bucket/claims.parquet", "s3://***@bucket/claims.parquet"),
    (f"s3://AKIAKEY:ab/{SECRET}@bucket/x.csv", "s3://***@bucket/x.csv"),  # a / in the secret
    (f"http://user:p@{SECRET}@host/x.csv", "http://***@host/x.csv"),  # an @ in the password
    (f"postgresql+psycopg://mlops:{SECRET}@db:5432/optuna", "postgresql+psycopg://***@db:5432/optuna"),
    (f"https://h/x.csv?key={SECRET}&X-Amz-Credential={SECRET}/eu&day=1",
     "https://h/x.csv?key=***&X-Amz-Credential=***&day=1"),
    ("http://host:8080/users/a@b.csv", "http://host:8080/users/a@b.csv"),  # a port, not a password
    ("models:/fraud@champion", "models:/fraud@champion"),
])
def test_redact_covers_every_url_credential_form(text, shown):
    assert redact(text) == shown


def test_a_hidden_location_is_revealed_in_this_process_only_for_its_own_form():
    from tasks.core.credentials import hide, reveal

    real = f"http://user:{SECRET}@files.example/in/claims-{{date}}.csv?token={SECRET}"
    public = hide(real)
    assert public == "http://***@files.example/in/claims-{date}.csv?token=***"
    assert reveal(public) == real
    assert reveal(public.replace("{date}", "2026-12-01")) == real.replace("{date}", "2026-12-01")
    assert reveal("data/claims.csv") == "data/claims.csv" == hide("data/claims.csv")
    assert reveal(f"https://u:{SECRET}@h/x.csv") == f"https://u:{SECRET}@h/x.csv"


def test_a_workers_process_reveals_from_mlops_data_urls(monkeypatch):
    from tasks.core.credentials import reveal, revealed
    from tasks.core.errors import ConfigError, DataError
    from tasks.core.settings import data_urls

    real = f"s3://AKIAKEY:{SECRET}@bucket/claims-{{date}}.parquet"
    monkeypatch.setenv("MLOPS_DATA_URLS", f"s3://other:x@b/y.csv {real}")
    assert reveal("s3://***@bucket/claims-2026-12-01.parquet", data_urls) == real.replace(
        "{date}", "2026-12-01")
    assert SECRET not in repr(Settings.from_env())
    with pytest.raises(ConfigError, match=r"s3://\*\*\*@elsewhere/x.csv: this process does not "
                                          "hold its credentials.*MLOPS_DATA_URLS"):
        reveal("s3://***@elsewhere/x.csv", data_urls)
    with pytest.raises(DataError) as caught, revealed("s3://***@bucket/claims-1.parquet",
                                                      data_urls) as url:
        raise DataError(f"cannot read {url}")
    assert str(caught.value) == "cannot read s3://***@bucket/claims-1.parquet"


def test_a_model_yaml_with_credentials_in_its_data_path_is_refused():
    from tasks.core.config import parse_config
    from tasks.core.errors import ConfigError
    from tests.conftest import config_yaml

    data = f"data: {{source: file, path: 'https://u:{SECRET}@h/train.csv'}}"
    with pytest.raises(ConfigError) as caught:
        parse_config(config_yaml(data=data))
    assert SECRET not in str(caught.value)
    assert "data.path holds credentials: write it as 'https://***@h/train.csv'" in str(caught.value)
    assert parse_config(config_yaml(data=data.replace(f"u:{SECRET}", "***"))).data.path == (
        "https://***@h/train.csv")


def test_an_output_is_named_redacted(tmp_path):
    from tasks.adapters.sinks import Sink
    from tasks.core.errors import DataError

    with pytest.raises(DataError) as caught:
        Sink(f"https://u:{SECRET}@h/out.json")
    assert str(caught.value) == ("output must be .parquet, .csv or snowflake:<table>, got "
                                 "https://***@h/out.json")
    assert Sink(str(tmp_path / "out.csv")).location == str(tmp_path / "out.csv")


def test_the_failure_hook_reports_through_the_settings_its_run_started_with(monkeypatch):
    """Prefect calls the failure hook with its own arguments after the flow: it names the Slack
    block the flow's entry point read (Settings.from_env at the flow's start), not one the
    environment says later; without an entry point it reads them then."""
    from types import SimpleNamespace

    from tasks.adapters import slack
    from tasks.core import settings

    calls = []
    monkeypatch.setattr(slack, "notify", lambda subject, body, name: calls.append((subject, name)))
    monkeypatch.setattr(settings, "_ENTRY_POINTS", None)
    run = SimpleNamespace(name="brave-otter", id="r1", parameters={"model": "fraud"})
    failed = SimpleNamespace(message="boom", name="Failed")
    monkeypatch.setenv("MLOPS_SLACK_BLOCK", "read-late")
    slack.notify_flow_failure(SimpleNamespace(name="training-pipeline"), run, failed)
    monkeypatch.setenv("MLOPS_SLACK_BLOCK", "the-runs-own")
    settings.Settings.from_env()  # the flow's entry point
    monkeypatch.setenv("MLOPS_SLACK_BLOCK", "changed-since")
    settings.Settings.from_env({"MLOPS_SLACK_BLOCK": "a-test-mapping"})  # not the process's
    slack.notify_flow_failure(SimpleNamespace(name="training-pipeline"), run, failed)
    assert calls == [("training-pipeline failed: fraud", "read-late"),
                     ("training-pipeline failed: fraud", "the-runs-own")]
