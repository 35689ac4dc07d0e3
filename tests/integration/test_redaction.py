"""A secret in the tracking URI during an outage stays out of stderr, logs, Prefect states and
Slack; model servers and notebook kernels do not see the process's credentials."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlops.cli import app
from tests.e2e.conftest import descendants

runner = CliRunner()
SECRET = "S3cretPw0rd"
CREDENTIALS = {"MLOPS_GITLAB_TOKEN": f"glpat-{SECRET}", "SNOWFLAKE_PASSWORD": f"snow-{SECRET}",
               "PREFECT_API_KEY": f"pnu_{SECRET}", "AWS_SECRET_ACCESS_KEY": f"aws-{SECRET}",
               "MLOPS_APPROVER_TOKEN": f"glpat-a-{SECRET}"}


class Outage:
    """A tracking server that answers its health check, then drops every API call: it went
    down after the pipeline checked it was up."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path == "/health":
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"OK")
                    return
                self.close_connection = True  # no answer at all

            do_POST = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def outage():
    server = Outage()
    yield server
    server.server.shutdown()


@pytest.fixture
def slack(monkeypatch):
    from prefect.blocks.notifications import SlackWebhook

    posts: list[str] = []

    def request(method, url, data=None, **kw):
        import requests

        posts.append(url + " " + data)
        response = requests.Response()
        response.status_code, response._content = 200, b"ok"
        return response

    SlackWebhook(url="https://hooks.slack.com/services/T0001/B0001/hookToken").save(
        "redaction-alerts", overwrite=True)
    monkeypatch.setattr("apprise.plugins.slack.requests.request", request)
    monkeypatch.setenv("MLOPS_SLACK_BLOCK", "redaction-alerts")
    return posts


def prefect_record(model: str) -> tuple[list[str], list[str]]:
    """State messages of the model's training flow runs and of their task runs, and every log
    line the Prefect server holds for them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        runs = [r for r in client.read_flow_runs(flow_run_filter=FlowRunFilter())
                if r.parameters.get("model") == model]
        states = [r.state.message or "" for r in runs]
        states += [t.state.message or "" for r in runs
                   for t in client.read_task_runs(flow_run_filter=FlowRunFilter(
                       id={"any_": [r.id]}))]
        logs = [log.message for log in client.read_logs(log_filter=LogFilter(
            flow_run_id=LogFilterFlowRunId(any_=[r.id for r in runs])))]
    return states, logs


def test_a_secret_in_the_tracking_uri_stays_out_of_stderr_logs_and_slack(
        write_config, outage, slack, monkeypatch, caplog, capfd):
    name = write_config("leaky")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://svc:{SECRET}@127.0.0.1:{outage.port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    result = runner.invoke(app, ["train", "--force", name])
    console = capfd.readouterr()
    states, logs = prefect_record(name)

    assert result.exit_code == 1, result.output
    [error] = result.stderr.strip().splitlines()
    assert error.startswith("error: MlflowException: API request to http://***@127.0.0.1:")
    assert any("***@127.0.0.1" in s for s in states)  # the URL was there, redacted
    assert logs and any("Finished in state Failed" in line for line in logs)
    [post] = slack
    assert "training-pipeline failed: leaky" in post and "***@127.0.0.1" in post
    for where, text in {"stdout": result.stdout, "stderr": result.stderr,
                        "console": console.out + console.err, "log records": caplog.text,
                        "Prefect states": "\n".join(states), "Prefect logs": "\n".join(logs),
                        "Slack": post}.items():
        assert SECRET not in text, f"the secret reached {where}"


def test_a_model_server_sees_no_credentials(tmp_path, claims, monkeypatch):
    """What staging serves with (settings.child_env), checked in the processes' environment."""
    from tasks.core.config import parse_config
    from tasks.core.settings import Settings
    from tasks.core.tasktypes import task_type
    from tasks.release.serving import start_model_server
    from tasks.training.register import build_model_dir, input_example
    from tasks.training.train import feature_spec, split_rows, train_model
    from tasks.training.validate import validate_frame
    from tests.conftest import config_yaml

    cfg = parse_config(config_yaml("binary", n_trials=1))
    spec = feature_spec(claims, validate_frame(claims, cfg), cfg)
    splits = split_rows(spec.encode_target(claims[cfg.target]), cfg.training, task_type("binary"))
    trained = train_model(claims, spec, splits, cfg.training, "cpu", "s", progress=lambda m: None)
    model_dir = build_model_dir(trained, input_example(claims, spec), tmp_path / "model", "card")
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://svc:{SECRET}@127.0.0.1:1")
    server = start_model_server(str(model_dir), 120, tmp_path / "server.log",
                                Settings.from_env().child_env)
    try:
        pids = [server.process.pid, *descendants(server.process.pid)]
        environments = [Path(f"/proc/{pid}/environ").read_bytes() for pid in pids]
    finally:
        server.stop()
    assert environments and all(b"PATH=" in env for env in environments)
    for env in environments:
        keys = {item.split(b"=", 1)[0].decode() for item in env.split(b"\0") if item}
        assert SECRET.encode() not in env and not keys & {*CREDENTIALS, "MLFLOW_TRACKING_URI"}


def test_a_notebook_kernel_sees_only_what_it_needs(home, registry, tmp_path, monkeypatch):
    import nbformat

    from tasks.core.settings import Settings
    from tasks.training.notebook import run_notebook

    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    seen = tmp_path / "kernel-env.json"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("out = ''", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("import json, os\n"
                                          "open(out, 'w').write(json.dumps(dict(os.environ)))")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = tmp_path / "envcheck.ipynb"
    nbformat.write(nb, path)
    run_notebook(str(path), registry(), Settings.from_env(), "cpu", {"out": str(seen)})
    env = json.loads(seen.read_text())
    assert "MLFLOW_TRACKING_URI" in env and "PATH" in env
    assert not set(env) & set(CREDENTIALS) and SECRET not in json.dumps(env)
