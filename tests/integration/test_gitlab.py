"""A simulated merge request pipeline against the fake GitLab API: one model report comment
(updated, not duplicated, by a re-run), GitLab deployments per promotion, scope errors that
leave the pipeline's result alone."""

from __future__ import annotations

import contextlib

import pytest

from flows.training import training_pipeline
from tests.conftest import crown
from tests.fakes.gitlab_api import FakeGitLab

# whole training or deploy flows per test: `make test` runs this module, the quick subset
# (`make test-fast`) leaves it out (docs/testing.md)
pytestmark = pytest.mark.slow

SMOKE = "deploy:\n  staging:\n    smoke: {max_latency_ms: 2000}\n"


@pytest.fixture
def gitlab(monkeypatch):
    fake = FakeGitLab(tokens={"glpat-good": ["api"], "glpat-read": ["read_api"]}).start()
    for key, value in {"CI_SERVER_URL": fake.url, "CI_PROJECT_ID": "42",
                       "MLOPS_GITLAB_TOKEN": "glpat-good", "CI_MERGE_REQUEST_IID": "17",
                       "CI_COMMIT_SHA": "c" * 40, "CI_COMMIT_REF_NAME": "feature/better-fraud",
                       "CI_PIPELINE_URL": f"{fake.url}/group/claims/-/pipelines/9001"}.items():
        monkeypatch.setenv(key, value)
    yield fake
    fake.stop()


@contextlib.contextmanager
def approved_up_front(name: str):
    """What `mlops run --as NAME` does in its own process (no flow parameter can do it)."""
    from tasks.contracts.release import Approval, Identity
    from tasks.release.approval import UP_FRONT

    token = UP_FRONT.set(Approval(approver=Identity(username=name), approved=True))
    try:
        yield
    finally:
        UP_FRONT.reset(token)


def test_mr_pipeline_comments_once_and_records_environments(write_config, gitlab):
    name = write_config("mr-model", extra=SMOKE)
    with approved_up_front("ci-bot"):
        first = training_pipeline(name, deploy=True, wait_for_approval=False)
    assert first.deployment.production.startswith("promoted")
    [note] = gitlab.notes["17"]
    body = note["body"]
    assert "<!-- prefect-mlops:model-report:mr-model -->" in body
    assert "gate ✅ passed" in body and "no champion yet" in body
    assert "| roc_auc |" in body and "roc_auc per slice" in body and "region=" in body
    assert "/pipelines/9001" in body and "![" in body  # plots uploaded and shown
    assert len(gitlab.uploads) >= 1
    assert [(d["environment"]["name"], d["status"]) for d in gitlab.deployments] == [
        ("staging", "success"), ("production", "success")]
    assert {d["sha"] for d in gitlab.deployments} == {"c" * 40}

    again = training_pipeline(name)  # a pipeline that changed nothing about the model
    assert again.reused and again.version == "1"
    [note] = gitlab.notes["17"]
    assert "unchanged, v1 reused" in note["body"] and "| roc_auc |" in note["body"]

    write_config("mr-model", n_trials=3, extra=SMOKE)  # the MR changes the model: a new run
    second = training_pipeline(name)
    assert second.version == "2"
    [note] = gitlab.notes["17"]  # still one comment, now comparing with champion v1
    assert "champion v1" in note["body"] and "Δ" in note["body"]


def test_token_without_scope_leaves_the_pipeline_result_alone(write_config, gitlab, monkeypatch,
                                                              caplog):
    monkeypatch.setenv("MLOPS_GITLAB_TOKEN", "glpat-read")
    name = write_config("scoped", extra=SMOKE)
    with approved_up_front("ci-bot"):
        result = training_pipeline(name, deploy=True, wait_for_approval=False)
    assert result.deployment.production.startswith("promoted")
    assert gitlab.notes.get("17", []) == [] and gitlab.deployments == []
    assert "HTTP 403" in caplog.text


def test_without_gitlab_settings_the_steps_say_skipped(write_config, caplog, monkeypatch):
    """In a GitLab CI job (CI_SERVER_URL set) a skipped step is said at INFO; on a laptop, where
    nobody expects GitLab, only at DEBUG (it printed on every run)."""
    import logging

    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="prefect.task_runs")  # the steps' run logger
    name = write_config("plain")
    assert training_pipeline(name).gate == "passed"
    said = [r for r in caplog.records if "GitLab merge request report skipped" in r.getMessage()]
    assert said and all(r.levelno == logging.DEBUG for r in said)
    caplog.clear()
    monkeypatch.setenv("CI_SERVER_URL", "https://gitlab.example.com")
    assert training_pipeline(name).gate.startswith("passed")  # the same version, reused
    said = [r for r in caplog.records if "GitLab merge request report skipped" in r.getMessage()]
    assert said and all(r.levelno == logging.INFO for r in said)


def test_schedule_migration_dry_run_then_apply(gitlab, home, monkeypatch):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL
    from typer.testing import CliRunner

    from mlops.cli import app

    for model in ("fraud", "damage"):
        (home / "configs" / f"{model}.yaml").write_text("name: x\n")  # only names matter here
    weekly = gitlab.add_schedule("weekly retrain", "0 2 * * 1", "Europe/Berlin",
                                 {"SCHEDULED_RETRAIN": "true", "TRAINING_DATA_DATE": "2026-11-01"})
    gitlab.add_schedule("fraud nightly", "30 1 * * *", variables={"MODEL": "fraud"})
    gitlab.add_schedule("broken", "0 2 * * 9", variables={"MODEL": "fraud"})
    gitlab.add_schedule("docs build", "0 3 * * *")  # not a retrain: reported, not migrated
    runner = CliRunner()

    dry = runner.invoke(app, ["schedules", "migrate-from-gitlab"])
    assert dry.exit_code == 2, dry.output  # two schedules cannot be migrated
    assert "training-pipeline/damage, training-pipeline/fraud" in dry.stdout
    assert "NOT MIGRATED: Prefect cannot take cron '0 2 * * 9'" in dry.stdout
    assert "not a retraining schedule" in dry.stdout
    assert "slug: gitlab-1" in dry.stdout and "as_of: '2026-11-01'" in dry.stdout
    assert "dry run: nothing changed" in dry.stdout
    assert all(s["active"] for s in gitlab.schedules)

    async def deploy_targets():
        async with get_client() as client:
            flow_id = await client.create_flow_from_name("training-pipeline")
            for name in ("fraud", "damage"):
                await client.create_deployment(flow_id, name, entrypoint="flows/training.py:x")

    asyncio.run(deploy_targets())
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    applied = runner.invoke(app, ["schedules", "migrate-from-gitlab", "--apply"])
    assert applied.exit_code == 2, applied.output
    assert "training-pipeline/damage: schedule gitlab-1 created (0 2 * * 1 Europe/Berlin)" \
        in applied.stdout
    assert f"GitLab schedule {weekly['id']}: deactivated" in applied.stdout
    assert [s["active"] for s in gitlab.schedules] == [False, False, True, True]

    async def schedules_of(name):
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(f"training-pipeline/{name}")
            return {s.slug: s for s in await client.read_deployment_schedules(deployment.id)}

    fraud = asyncio.run(schedules_of("fraud"))
    assert set(fraud) == {"gitlab-1", "gitlab-2"}
    assert fraud["gitlab-1"].schedule.timezone == "Europe/Berlin"
    assert fraud["gitlab-1"].parameters == {"as_of": "2026-11-01"}
    again = runner.invoke(app, ["schedules", "migrate-from-gitlab", "--apply"])
    assert "already there" not in again.stdout  # deactivated ones are not migrated twice
    assert set(asyncio.run(schedules_of("fraud"))) == {"gitlab-1", "gitlab-2"}


def test_seed_003_weekly_schedule_moves_to_prefect(gitlab, home, monkeypatch):
    """Seed 003's own schedule: SCHEDULED_RETRAIN "true" and TRAINING_DATA_DATE "latest" (no
    as-of date) become one weekly Prefect schedule per model; GitLab's is deactivated."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL
    from typer.testing import CliRunner

    from mlops.cli import app

    for model in ("fraud", "damage", "settlement"):
        (home / "configs" / f"{model}.yaml").write_text("name: x\n")
    seed = gitlab.add_schedule("Weekly fraud model retraining", "0 2 * * 1", "UTC",
                               {"SCHEDULED_RETRAIN": "true", "TRAINING_DATA_DATE": "latest"})

    async def deploy_targets():
        async with get_client() as client:
            flow_id = await client.create_flow_from_name("training-pipeline")
            for name in ("fraud", "damage", "settlement"):
                await client.create_deployment(flow_id, name, entrypoint="flows/training.py:x")

    asyncio.run(deploy_targets())
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    applied = CliRunner().invoke(app, ["schedules", "migrate-from-gitlab", "--apply"])
    assert applied.exit_code == 0, applied.output
    assert "NOT MIGRATED" not in applied.stdout
    assert f"GitLab schedule {seed['id']}: deactivated" in applied.stdout
    assert [s["active"] for s in gitlab.schedules] == [False]

    async def seed_schedule(name):
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(f"training-pipeline/{name}")
            found = await client.read_deployment_schedules(deployment.id)
            return {s.slug: s for s in found}[f"gitlab-{seed['id']}"]

    for model in ("fraud", "damage", "settlement"):
        schedule = asyncio.run(seed_schedule(model))
        assert schedule.schedule.cron == "0 2 * * 1" and schedule.active
        assert not schedule.parameters  # "latest": no as_of, the deployment trains on the newest data


def test_scoring_and_monitoring_runs_write_dated_wiki_rows(write_config, registry, gitlab, home,
                                                           monkeypatch):
    from flows.monitoring import monitoring
    from flows.scoring import batch_scoring
    from tasks.training.synthetic import generate_claims

    monkeypatch.setattr("prefect.events.emit_event", lambda *a, **kw: None)
    name = write_config("wiki-model", rows=2500)
    crown(registry(), name, training_pipeline(name).version)
    generate_claims(1500, seed=21).to_parquet(home / "fresh.parquet")
    generate_claims(1500, seed=22, drift=1.0).to_parquet(home / "drifted.parquet")
    batch_scoring(name, str(home / "fresh.parquet"), str(home / "scores.parquet"))
    monitoring(name, str(home / "fresh.parquet"))
    monitoring(name, str(home / "drifted.parquet"))
    page = gitlab.wikis[f"mlops/{name}"]["content"].splitlines()
    assert page[0] == f"# {name}: batch scoring and monitoring"
    rows = [line for line in page if line.startswith("| 20")]
    assert len(rows) == 3
    assert "| monitoring | v1 | 1,500 | **drift** |" in rows[0]
    assert "**no-drift**" in rows[1] and "largest PSI" in rows[1]
    assert "| batch-scoring | v1 | 1,500 |" in rows[2] and "mean probability" in rows[2]
