"""Batch scoring and monitoring flows under the Prefect test server, MLflow in a temp folder:
the registered reference profile, a tampered artifact, no champion, drift, the event, Slack."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.monitoring import monitoring
from flows.scoring import batch_scoring
from flows.training import training_pipeline
from mlops.cli import app
from tasks.core.errors import DataError, IntegrityError, ScoringError
from tasks.training.synthetic import generate_claims
from tests.conftest import config_yaml, crown
from tests.integration.conftest import HomeSnapshot, point_at

# whole training or deploy flows per test: `make test` runs this module, the quick subset
# (`make test-fast`) leaves it out (docs/testing.md)
pytestmark = pytest.mark.slow

LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d \| [A-Z]+ +\| ")

runner = CliRunner()


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batches")
    generate_claims(2000, seed=11).to_parquet(folder / "fresh.parquet")
    generate_claims(2000, seed=12, drift=1.0).to_parquet(folder / "drifted.parquet")
    generate_claims(200, seed=13).to_parquet(folder / "few.parquet")
    return folder


def champion_of(write_config, registry, name: str, task: str = "binary") -> str:
    write_config(name, task=task, rows=2500)
    result = training_pipeline(name)
    crown(registry(), name, result.version)
    return result.version


FRAUDISH = "fraudish"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Binary model `fraudish` with one registered version (v1), not yet champion: trained once
    per module, each test starts from a copy restored in place (HomeSnapshot)."""
    snapshot = HomeSnapshot(tmp_path_factory.mktemp("scoring") / "home")
    with pytest.MonkeyPatch.context() as mp:
        point_at(snapshot.base, mp)
        (snapshot.base / "configs" / f"{FRAUDISH}.yaml").write_text(
            config_yaml(name=FRAUDISH, rows=2500))
        assert training_pipeline(FRAUDISH).version == "1"
        snapshot.take()
    return snapshot


@pytest.fixture
def uncrowned(trained, home, monkeypatch) -> str:
    """The module's `fraudish` as trained (v1 registered, no champion), in this test's
    environment; `home` stays this test's own folder for outputs."""
    trained.restore()
    point_at(trained.base, monkeypatch)
    return FRAUDISH


@pytest.fixture
def champion(uncrowned, registry) -> str:
    """The module's `fraudish` with v1 crowned champion."""
    crown(registry(), uncrowned, "1")
    return uncrowned


def test_reference_profile_is_registered_with_the_version(champion, registry, home):
    version = "1"
    reg = registry()
    local = reg.download_version(champion, version, home / "dl").path
    profile = json.loads((local / "reference_profile.json").read_text())
    assert profile["metric"] == "roc_auc" and 0.5 < profile["metric_value"] <= 1
    assert {"region", "claim_amount", "__prediction__"} <= set(profile["columns"])
    region = profile["columns"]["region"]
    assert region["kind"] == "categorical" and sum(region["counts"]) == profile["rows"]
    spec = json.loads(next(local.rglob("feature_spec.json")).read_text())
    assert set(profile["attributions"]) == set(spec["features"])  # mean |SHAP| per feature
    assert sum(profile["attributions"].values()) > 0


def run_artifacts(flow_run_id) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[flow_run_id])))
    return {a.key: a.data for a in found if a.key}


def test_score_and_monitor_a_fresh_and_a_drifted_batch(champion, registry, batches, home,
                                                       monkeypatch):
    emitted = []
    monkeypatch.setattr("prefect.events.emit_event",
                        lambda event, **kw: emitted.append((event, kw)))
    summary = batch_scoring("fraudish", str(batches / "fresh.parquet"),
                            str(home / "out" / "scores-{date}.parquet"), day="2026-11-20")
    out = pd.read_parquet(home / "out" / "scores-2026-11-20.parquet")
    assert summary.rows == len(out) == 2000 and summary.model == "fraudish"
    assert "is_fraud" in summary.ignored

    calm = monitoring("fraudish", str(batches / "fresh.parquet"))
    assert calm.verdict == "no-drift", calm.message
    assert emitted == []

    drifted = monitoring("fraudish", str(batches / "drifted.parquet"), return_state=True)
    drift = drifted.result()
    assert drift.verdict == "drift"
    assert {"days_to_report", "region"} <= {c.name for c in drift.drifted}
    [(event, kw)] = emitted
    assert event == "mlops.model.drift-detected"
    assert kw["resource"]["prefect.resource.id"] == "mlops.model.fraudish"
    assert "days_to_report" in kw["payload"]["drifted"]
    reg = registry()
    runs = reg.client.search_runs([reg.client.get_experiment_by_name(
        "monitoring/fraudish").experiment_id], filter_string="tags.verdict = 'drift'")
    [run] = runs
    assert run.data.metrics["psi.days_to_report"] > 0.2
    files = {f.path for f in reg.client.list_artifacts(run.info.run_id, "drift")}
    assert {"drift/drift_report.html", "drift/drift_psi.png",
            "drift/drift_distributions.png"} <= files
    html = Path(reg.client.download_artifacts(run.info.run_id, "drift/drift_report.html",
                                              str(home / "report"))).read_text()
    assert "<b>drift</b>" in html and "data:image/png;base64," in html
    # a local store has no URL for the Prefect UI's images: the run says where the files are
    shown = run_artifacts(drifted.state_details.flow_run_id)
    plots = shown["drift-fraudish-plots"]
    listed = re.findall(r"`(/[^`]+\.png)`", plots)
    assert len(listed) == 2 and all(Path(p).is_file() for p in listed), plots
    assert "no URL" in plots
    report = re.findall(r"`(/[^`]+)`", shown["drift-fraudish-report"])
    assert report and Path(report[0]).is_file() and report[0].endswith("drift_report.html")

    few = monitoring("fraudish", str(batches / "few.parquet"))
    assert few.verdict == "insufficient" and "no verdict" in few.message


def test_multiclass_and_regression_champions_score(write_config, registry, batches, home):
    for name, task, columns in (("sev", "multiclass", {"prediction", "probability_minor"}),
                                ("amount", "regression", {"prediction"})):
        champion_of(write_config, registry, name, task)
        batch_scoring(name, str(batches / "fresh.parquet"), str(home / f"{name}.csv"))
        out = pd.read_csv(home / f"{name}.csv")
        assert columns <= set(out.columns) and len(out) == 2000
        assert monitoring(name, str(batches / "fresh.parquet")).verdict in ("no-drift", "drift")


def test_tampered_artifact_is_refused_and_nothing_is_scored(champion, registry, batches, home):
    version = "1"
    reg = registry()
    source = reg.client.get_model_version(champion, version).source
    run_artifacts = Path(reg.client.get_run(reg.client.get_model_version(
        champion, version).run_id).info.artifact_uri.removeprefix("file://"))
    [booster] = list(run_artifacts.rglob("model.ubj"))
    booster.write_bytes(booster.read_bytes()[:-8] + b"\x00" * 8)
    assert source.endswith("/model")
    with pytest.raises(IntegrityError, match="failed its integrity check: artifacts/model.ubj was "
                                             "changed"):
        batch_scoring(champion, str(batches / "fresh.parquet"), str(home / "t.parquet"))
    assert not (home / "t.parquet").exists()
    assert not list(home.glob(".t.parquet*"))


def test_no_champion_yet_and_bad_input(uncrowned, registry, batches, home):
    # registered (challenger), never promoted
    with pytest.raises(ScoringError, match="has no @champion version yet"):
        batch_scoring(uncrowned, str(batches / "fresh.parquet"), str(home / "n.parquet"))
    crown(registry(), uncrowned, "1")
    broken = home / "broken.parquet"
    generate_claims(600, seed=3).drop(columns=["region"]).to_parquet(broken)
    with pytest.raises(DataError, match="lacks feature column.*region"):
        monitoring(uncrowned, str(broken))
    assert not (home / "n.parquet").exists()


def test_cli_exit_codes(champion, batches, home):
    ok = runner.invoke(app, ["monitor", champion, "--input", str(batches / "fresh.parquet")])
    assert ok.exit_code == 0, ok.output
    assert "NO-DRIFT" in ok.stdout and "days_to_report" in ok.stdout
    drift = runner.invoke(app, ["monitor", champion, "--input", str(batches / "drifted.parquet")])
    assert drift.exit_code == 4, drift.output
    assert "DRIFT" in drift.stdout and "report: run " in drift.stdout
    few = runner.invoke(app, ["monitor", champion, "--input", str(batches / "few.parquet")])
    assert few.exit_code == 2 and "no verdict" in few.stdout
    missing = runner.invoke(app, ["score", champion, "--input", str(home / "nope.parquet"),
                                  "--output", str(home / "o.parquet")])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    scored = runner.invoke(app, ["score", champion, "--input", str(batches / "fresh.parquet"),
                                 "--output", str(home / "o.parquet")])
    assert scored.exit_code == 0, scored.output
    assert "2,000" in scored.stdout and "ignored input columns" in scored.stdout
    # the run's log says "rows scored" (log lines go to stdout too); the command itself shows a table
    printed = [line for line in scored.stdout.splitlines() if not LOG_LINE.match(line)]
    assert any("2,000" in line for line in printed)
    assert not any("rows scored" in line for line in printed)
    too_many = runner.invoke(app, ["score", champion, "--input", str(batches / "fresh.parquet"),
                                   "--output", str(home / "x.parquet"), "--explain", "999"])
    assert too_many.exit_code == 2 and "--explain 999: the model has" in too_many.stderr
    assert len(too_many.stderr.strip().splitlines()) == 1 and not (home / "x.parquet").exists()
    explained = runner.invoke(app, ["score", champion, "--input", str(batches / "fresh.parquet"),
                                    "--output", str(home / "e.parquet"), "--explain", "2"])
    assert explained.exit_code == 0, explained.output
    out = pd.read_parquet(home / "e.parquet")
    assert {"explain_1_feature", "explain_1_contribution", "explain_2_feature"} <= set(out)
    assert (out["explain_1_contribution"].abs() >= out["explain_2_contribution"].abs()).all()
    bad_day = runner.invoke(app, ["score", champion, "--input", "x.parquet", "--output",
                                  "y.parquet", "--day", "yesterday"])
    assert bad_day.exit_code == 2 and "--day must be a date" in bad_day.stderr


class FakeSlack:
    """Slack's incoming-webhook endpoint as apprise reaches it: POST JSON, answer 200 "ok"."""

    def __init__(self):
        self.posts: list[tuple[str, dict]] = []

    def request(self, method, url, data=None, **kw):
        import requests

        self.posts.append((url, json.loads(data)))
        response = requests.Response()
        response.status_code, response._content = 200, b"ok"
        return response


@pytest.fixture
def slack(monkeypatch):
    from prefect.blocks.notifications import SlackWebhook

    SlackWebhook(url="https://hooks.slack.com/services/T0001/B0001/s3cretHookToken").save(
        "mlops-alerts", overwrite=True)
    fake = FakeSlack()
    monkeypatch.setattr("apprise.plugins.slack.requests.request", fake.request)
    monkeypatch.setenv("MLOPS_SLACK_BLOCK", "mlops-alerts")
    return fake


def text_of(post: tuple[str, dict]) -> str:
    return json.dumps(post[1])


def test_slack_hears_about_drift_and_failed_runs(champion, batches, home, slack, monkeypatch):
    monkeypatch.setattr("prefect.events.emit_event", lambda *a, **kw: None)
    monitoring(champion, str(batches / "fresh.parquet"))
    assert slack.posts == []  # no drift, no message
    monitoring(champion, str(batches / "drifted.parquet"))
    [(url, _)] = slack.posts
    assert url.startswith("https://hooks.slack.com/services/T0001/B0001/")
    assert f"Drift detected: {champion}" in text_of(slack.posts[0])

    with pytest.raises(DataError):
        batch_scoring(champion, str(home / "missing.parquet"), str(home / "o.parquet"))
    assert len(slack.posts) == 2
    assert f"batch-scoring failed: {champion}" in text_of(slack.posts[1])
    assert "does not exist" in text_of(slack.posts[1])


def test_a_broken_slack_block_does_not_fail_the_run(champion, batches, monkeypatch):
    monkeypatch.setattr("prefect.events.emit_event", lambda *a, **kw: None)
    monkeypatch.setenv("MLOPS_SLACK_BLOCK", "no-such-block")
    assert monitoring(champion, str(batches / "drifted.parquet")).verdict == "drift"
