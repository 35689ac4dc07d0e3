"""A password in a data URL stays out of Prefect (parameters, states, events, artifacts) and
MLflow (params, tags, reports); a secret in the tracking URI during an outage stays out of
stderr, logs, Prefect states and Slack; model servers and notebook kernels do not see the
process's credentials.

The data-URL tests come first: a flow run after the outage test (capfd around the CLI) would
log to a stream that test closed."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlops.cli import app
from tests.conftest import crown
from tests.e2e.conftest import descendants

# whole training or deploy flows per test: `make test` runs this module, the quick subset
# (`make test-fast`) leaves it out (docs/testing.md)
pytestmark = pytest.mark.slow

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


class BasicAuthFiles:
    """Files served on loopback only to `user:<secret>` (HTTP basic auth); it counts the
    requests that carried the credentials, so a test sees they reached the server."""

    def __init__(self, folder: Path, secret: str):
        import base64
        from functools import partial
        from http.server import SimpleHTTPRequestHandler

        expected = "Basic " + base64.b64encode(f"user:{secret}".encode()).decode()
        served = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def send_head(self):
                if self.headers.get("Authorization") != expected:
                    self.send_error(401)
                    return None
                served.authorised += 1
                return super().send_head()

        self.authorised = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=folder))
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name: str, secret: str) -> str:
        return f"http://user:{secret}@127.0.0.1:{self.port}/{name}"


@pytest.fixture
def served(tmp_path):
    from tasks.training.synthetic import generate_claims

    folder = tmp_path / "served"
    folder.mkdir()
    generate_claims(2500, seed=5).to_csv(folder / "train.csv", index=False)
    generate_claims(1200, seed=11).to_csv(folder / "claims.csv", index=False)
    files = BasicAuthFiles(folder, SECRET)
    yield files
    files.server.shutdown()


def flow_runs_of(flow_name: str) -> list:
    """Every run of the flow on the test server, with its parameters, state and artifacts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                                     flow_run_filter=FlowRunFilter())


def prefect_texts(flow_run_ids: list) -> dict[str, str]:
    """What the Prefect server keeps of these runs, as text: parameters, names and state
    messages of the flow runs and their task runs, artifacts, and the events about them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, FlowRunFilter, FlowRunFilterId
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=10)
    runs = FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids))
    with get_client(sync_client=True) as client:
        flow_runs = client.read_flow_runs(flow_run_filter=runs)
        task_runs = client.read_task_runs(flow_run_filter=runs)
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(), flow_run_filter=runs)
        events = client.request("POST", "/events/filter", json={"limit": 50, "filter": {
            "any_resource": {"id": [f"prefect.flow-run.{i}" for i in flow_run_ids]}}}).json()
        pages = [events]
        while pages[-1].get("next_page"):
            pages.append(client.request("GET", pages[-1]["next_page"]).json())
    return {
        "parameters": json.dumps([r.parameters for r in flow_runs]),
        "run names": " ".join(r.name for r in [*flow_runs, *task_runs]),
        "states": json.dumps([r.state.model_dump(mode="json", exclude={"data"})
                              for r in [*flow_runs, *task_runs]]),
        "artifacts": json.dumps([a.model_dump(mode="json") for a in artifacts]),
        "events": json.dumps([e for page in pages for e in page["events"]]),
    }


def mlflow_texts(registry, experiment: str, into: Path) -> dict[str, str]:
    """The experiment's runs as text: params, tags and every artifact file that is text."""
    client = registry.client
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    texts = {"params": json.dumps([r.data.params for r in runs]),
             "tags": json.dumps([r.data.tags for r in runs])}
    for run in runs:
        folder = Path(client.download_artifacts(run.info.run_id, "", str(into / run.info.run_id)))
        texts.update({str(f): f.read_bytes().decode("utf-8", "replace")
                      for f in folder.rglob("*") if f.is_file()})
    return texts


def test_credentials_in_data_urls_stay_out_of_prefect_and_mlflow(
        write_config, registry, served, home):
    """`mlops score` and `mlops monitor` read a URL holding a password: the flow runs carry it
    redacted, the data is still read with it, and no run, state, artifact, event or MLflow
    record holds it (a read that fails included)."""
    from flows.training import training_pipeline

    name = write_config("urlsecret", rows=2500)
    crown(registry(), name, training_pipeline(name).version)
    scored = runner.invoke(app, ["score", name, "--input", served.url("claims.csv", SECRET),
                                 "--output", str(home / "scored.csv")])
    assert scored.exit_code == 0, scored.output
    monitored = runner.invoke(app, ["monitor", name, "--input", served.url("claims.csv", SECRET)])
    assert monitored.exit_code in (0, 4), monitored.output
    missing = runner.invoke(app, ["score", name, "--input", served.url("gone.csv", SECRET),
                                  "--output", str(home / "never.csv")])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr, missing.output
    assert served.authorised  # the credentials reached the server, and nothing else did

    runs = [r for flow in ("batch-scoring", "monitoring") for r in flow_runs_of(flow)
            if r.parameters.get("model") == name]
    assert {r.parameters["input"] for r in runs} == {
        f"http://***@127.0.0.1:{served.port}/claims.csv",
        f"http://***@127.0.0.1:{served.port}/gone.csv"} and len(runs) == 3
    for _ in range(30):  # the server stores events a moment after they arrive
        shown = prefect_texts([r.id for r in runs])
        if "does not exist" in shown["events"]:  # the failed run's state message
            break
        time.sleep(0.5)
    assert "***@127.0.0.1" in shown["events"] and "***@127.0.0.1" in shown["states"]
    assert "***@127.0.0.1" in shown["artifacts"]
    shown |= mlflow_texts(registry(), f"monitoring/{name}", home / "monitoring")
    assert any("***@127.0.0.1" in text for where, text in shown.items() if "drift" in where)
    shown |= {"stdout": scored.stdout + monitored.stdout + missing.stdout,
              "stderr": scored.stderr + monitored.stderr + missing.stderr}
    for where, text in shown.items():
        assert SECRET not in text, f"the secret reached {where}"


def test_a_training_reads_a_redacted_data_url_with_credentials_from_the_environment(
        write_config, registry, served, home, monkeypatch):
    """The model YAML names the URL redacted (it is in git); the flow's process holds it in
    MLOPS_DATA_URLS, as a worker would; MLflow and Prefect see only the redacted form."""
    redacted = f"http://***@127.0.0.1:{served.port}/train.csv"
    name = write_config("urltrain", data=f"data: {{source: file, path: '{redacted}'}}")
    monkeypatch.setenv("MLOPS_DATA_URLS", served.url("train.csv", SECRET))
    trained = runner.invoke(app, ["train", name])
    assert trained.exit_code == 0, trained.output
    assert served.authorised
    [run] = [r for r in flow_runs_of("training-pipeline") if r.parameters.get("model") == name]
    shown = prefect_texts([run.id])
    shown |= mlflow_texts(registry(), registry().training_experiment(name), home / "training")
    shown |= {"stdout": trained.stdout, "stderr": trained.stderr}
    for where, text in shown.items():
        assert SECRET not in text, f"the secret reached {where}"

    monkeypatch.delenv("MLOPS_DATA_URLS")
    unknown = runner.invoke(app, ["train", "--force", name])
    assert unknown.exit_code == 2 and "MLOPS_DATA_URLS" in unknown.stderr, unknown.output


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
    # the flow's first read of the registry (over REST) finds the server gone
    assert error.startswith("error: MLflow tracking server http://***@127.0.0.1:")
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

