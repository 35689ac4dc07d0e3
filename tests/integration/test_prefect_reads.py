"""`mlops status` reads the Prefect server with plain HTTP (no Prefect import): the same pending
approvals, last runs and next scheduled runs as through Prefect's client; a server that asks
for credentials is read through the client."""

from __future__ import annotations

import asyncio
import http.server
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from deployments.overview import ModelStatus, _from_prefect_client, _from_prefect_http
from deployments.schedules import from_server, from_server_http
from tasks.core.settings import Settings


def api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


@pytest.fixture(scope="module")
def filled():
    """A waiting deploy run, finished scoring and training runs, two deployments with a cron
    schedule each (one with a scheduled run, one without)."""
    from prefect import flow, get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.states import Completed, Failed, Paused, Scheduled

    from tasks.release.waiting import AWAITING

    @flow(name="deploy")
    def deploy(model: str, version: str) -> None: ...

    @flow(name="batch-scoring")
    def batch_scoring(model: str) -> None: ...

    @flow(name="training-pipeline")
    def training_pipeline(model: str) -> None: ...

    with get_client(sync_client=True) as client:
        client.create_flow_run(deploy, parameters={"model": "reads", "version": "3"},
                               tags=[AWAITING, "model:reads", "version:3"], state=Paused())
        client.create_flow_run(deploy, parameters={"model": "reads", "version": "2"},
                               state=Completed())
        client.create_flow_run(batch_scoring, parameters={"model": "reads"},
                               state=Failed(message="source gone"))
        client.create_flow_run(training_pipeline, parameters={"model": "reads"},
                               state=Completed())
        flow_id = client.create_flow_from_name("training-pipeline")
        for name, cron in (("reads-weekly", "0 3 * * 1"), ("reads-nightly", "30 2 * * *")):
            deployment = client.create_deployment(
                flow_id, name, schedules=[DeploymentScheduleCreate(
                    schedule=CronSchedule(cron=cron, timezone="Europe/Berlin"))])
            if name == "reads-weekly":
                client.create_flow_run_from_deployment(
                    deployment, state=Scheduled(
                        scheduled_time=datetime.now(UTC) + timedelta(days=2)))
    return Settings.from_env({"PREFECT_API_URL": api_url(), "MLOPS_HOME": "/nonexistent"})


def statuses() -> dict[str, ModelStatus]:
    return {"reads": ModelStatus("reads"), "other": ModelStatus("other")}


def test_status_reads_the_same_over_http_as_through_prefects_client(filled):
    http_side, client_side = statuses(), statuses()
    _from_prefect_http(filled, http_side)
    _from_prefect_client(filled, client_side)
    assert http_side == client_side
    reads = http_side["reads"]
    assert [p.version for p in reads.pending or []] == ["3"]
    assert {(r.kind, r.outcome, r.detail) for r in reads.last} == {
        ("scoring", "Failed", "source gone"), ("training", "Completed", "")}
    assert http_side["other"].pending == [] and not http_side["other"].last


def test_next_runs_read_the_same_over_http_as_through_prefects_client(filled):
    over_http = from_server_http(api_url())
    through_client = asyncio.run(from_server())
    assert over_http == through_client
    sources = {row.deployment: row.source for row in over_http
               if row.deployment.startswith("training-pipeline/reads-")}
    assert sources == {"training-pipeline/reads-weekly": "server",
                       "training-pipeline/reads-nightly": "cron"}


class Locked(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(401 if "locked" in self.path else 404)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args):
        pass


def test_a_server_that_wants_credentials_is_read_through_prefects_client(tmp_path: Path):
    from tasks.adapters import audit_anchor
    from tasks.adapters.prefect_rest import call
    from tasks.core.plain_http import NeedsClient

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Locked)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert call(f"{url}/api", "variables/name/nothing") is None
        with pytest.raises(NeedsClient):
            call(f"{url}/locked/api", "flow_runs/filter", {})
        anchor = audit_anchor.PrefectAnchor("m", "store", f"{url}/api")
        assert anchor._read_http(f"{url}/api") is None  # no variable yet
        with pytest.raises(NeedsClient):
            anchor._read_http(f"{url}/locked/api")
    finally:
        server.shutdown()
