"""The CI trigger's pure parts: commit messages, GitLab variables, idempotency keys, verdicts."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from uuid import uuid4

import pytest

from deployments.ci import CiContext, check_targets, idempotency_key, outcome, parse_targets
from tasks.core.errors import ConfigError


@pytest.mark.parametrize(("message", "targets"), [
    ("train fraud", ["fraud"]),
    ("train fraud damage\n\nbody text", ["fraud", "damage"]),
    ("Train fraud, settlement fraud", ["fraud", "settlement"]),
    ("train notebooks/x.ipynb", ["notebooks/x.ipynb"]),
    ("fix: retrain docs", None),
    ("train", None),
    ("", None),
])
def test_parse_targets(message, targets):
    assert parse_targets(message) == targets


REPO = Path(__file__).resolve().parents[2]


def test_unknown_model_and_missing_notebook_are_refused_before_anything_starts():
    with pytest.raises(ConfigError, match=r"unknown model\(s\) nosuch .*known: damage, fraud"):
        check_targets(["fraud", "nosuch"], {"fraud", "damage"})
    with pytest.raises(ConfigError, match="notebook .*notebooks/x.ipynb does not exist"):
        check_targets(["notebooks/x.ipynb"], {"fraud"}, REPO)
    assert check_targets(["fraud"], {"fraud"}) == ["fraud"]
    shipped = "notebooks/train_fraud.ipynb"
    assert check_targets(["fraud", shipped], {"fraud"}, REPO) == ["fraud", shipped]


def test_notebooks_run_on_the_notebook_deployment_with_their_own_key():
    from deployments.ci import deployment_for

    ctx = CiContext.from_env({"CI_COMMIT_MESSAGE": "train notebooks/train_fraud.ipynb",
                              "CI_PIPELINE_ID": "77"})
    assert deployment_for("notebooks/train_fraud.ipynb") == (
        "notebook-training/notebooks", {"notebook": "notebooks/train_fraud.ipynb"})
    assert idempotency_key(ctx, "fraud") == "gitlab-pipeline-77-training-pipeline/fraud"
    assert idempotency_key(ctx, "notebooks/train_fraud.ipynb") == \
        "gitlab-pipeline-77-notebook-training/notebooks:notebooks/train_fraud.ipynb"


def test_context_from_gitlab_variables():
    ctx = CiContext.from_env({"CI_COMMIT_MESSAGE": "train fraud", "CI_PIPELINE_ID": "42",
                              "CI_COMMIT_REF_NAME": "main", "CI_COMMIT_SHA": "abcdef1234567890",
                              "TRAINING_DATA_DATE": "2025-06-30"})
    assert ctx.as_of == date(2025, 6, 30)
    assert ctx.tags() == ["gitlab-pipeline:42", "ref:main", "sha:abcdef123456"]
    assert idempotency_key(ctx, "fraud") == "gitlab-pipeline-42-training-pipeline/fraud"
    with pytest.raises(ConfigError, match="CI_PIPELINE_ID is not set"):
        CiContext.from_env({"CI_COMMIT_MESSAGE": "train fraud"})
    with pytest.raises(ConfigError, match="TRAINING_DATA_DATE='yesterday' is neither"):
        CiContext.from_env({"CI_PIPELINE_ID": "1", "TRAINING_DATA_DATE": "yesterday"})


@pytest.mark.parametrize(("value", "as_of"), [
    ("latest", None), (" latest ", None), ("", None), ("2025-06-30", date(2025, 6, 30))])
def test_training_data_date_latest_or_a_backfill_date(value, as_of):
    """Seed 003's schedule sets TRAINING_DATA_DATE: "latest" (or a date for backfills)."""
    ctx = CiContext.from_env({"CI_PIPELINE_ID": "1", "TRAINING_DATA_DATE": value})
    assert ctx.as_of == as_of


@pytest.mark.parametrize("value", ["yesterday", "LATEST", "20250630", "2025-06-31", "2025-W26-1"])
def test_training_data_date_anything_else_is_one_line_naming_both_forms(value):
    with pytest.raises(ConfigError) as caught:
        CiContext.from_env({"CI_PIPELINE_ID": "1", "TRAINING_DATA_DATE": value})
    message = str(caught.value)
    assert '"latest"' in message and "YYYY-MM-DD" in message and "\n" not in message


def test_mlops_ci_exits_2_on_a_bad_training_data_date():
    import os
    import subprocess

    mlops = REPO / ".venv" / "bin" / "mlops"
    env = {**os.environ, "CI_PIPELINE_ID": "7", "CI_COMMIT_MESSAGE": "train fraud",
           "TRAINING_DATA_DATE": "last-monday"}
    result = subprocess.run([str(mlops), "ci"], capture_output=True, text=True, env=env,
                            timeout=120, cwd=REPO)
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert '"latest"' in result.stderr and "YYYY-MM-DD" in result.stderr


def test_seed_003_schedule_migrates_with_latest_as_no_as_of_date():
    from deployments.gitlab_schedules import plan

    seed = {"id": 3, "description": "Weekly fraud model retraining", "cron": "0 2 * * 1",
            "cron_timezone": "UTC", "active": True,
            "variables": {"SCHEDULED_RETRAIN": "true", "TRAINING_DATA_DATE": "latest"}}
    backfill = {**seed, "id": 4, "variables": {"MODEL": "fraud", "TRAINING_DATA_DATE": "2026-01-31"}}
    typo = {**seed, "id": 5, "variables": {"MODEL": "fraud", "TRAINING_DATA_DATE": "lastest"}}
    weekly, dated, bad = plan([seed, backfill, typo], ["damage", "fraud"])
    assert weekly.ok and weekly.parameters == {}
    assert weekly.targets == ["training-pipeline/damage", "training-pipeline/fraud"]
    assert dated.ok and dated.parameters == {"as_of": "2026-01-31"}
    assert not bad.ok and '"latest"' in bad.problem and "YYYY-MM-DD" in bad.problem


def test_outcome_codes_come_from_the_state_name_table():
    from prefect.client.schemas.objects import StateType

    assert outcome(StateType.COMPLETED, "Completed") == 0
    assert outcome(StateType.FAILED, "GateRejected") == 3
    assert outcome(StateType.FAILED, "Failed") == 1
    assert outcome(StateType.CRASHED, "Crashed") == 1
    assert outcome(StateType.CANCELLED, "Cancelled") == 1
    assert outcome(StateType.PAUSED, "Suspended", follow_up=True) == 0
    assert outcome(StateType.COMPLETED, "Cached") == 0  # a name of ours not in the table: by type
    assert outcome(StateType.FAILED, "TimedOut") == 1


class FakePrefect:
    """The few client calls `mlops ci` makes, over in-memory runs."""

    def __init__(self, states: dict, tagged: dict | None = None, pool_type: str = "gitlab-ci"):
        self.states, self.tagged, self.pool_type, self.created = states, tagged or {}, pool_type, []

    async def read_flow_runs(self, flow_run_filter=None, **kw):
        tags = flow_run_filter.tags.all_ if flow_run_filter and flow_run_filter.tags else None
        return self.tagged.get(tags[0], []) if tags else []

    async def read_logs(self, **kw):
        return []

    async def read_flow_run(self, run_id):
        from types import SimpleNamespace

        return SimpleNamespace(state=self.states[run_id])

    async def read_deployment_by_name(self, name):
        from types import SimpleNamespace

        return SimpleNamespace(id=uuid4(), name=name, work_pool_name="gpu-runners",
                               job_variables={"image": "img"})

    async def read_work_pool(self, name):
        from types import SimpleNamespace

        template = {"variables": {"properties": {"env": {"default": {"MLOPS_DEVICE": "cuda"}}}}}
        return SimpleNamespace(type=self.pool_type, base_job_template=template)

    async def create_flow_run_from_deployment(self, deployment_id, **kw):
        from types import SimpleNamespace

        self.created.append(kw)
        return SimpleNamespace(id=uuid4(), name="brave-otter")


def test_ci_ends_when_the_deploy_run_awaits_approval():
    """Training on a worker ends after staging by starting a deploy run: `mlops ci` reports its
    approval link and exits instead of holding the CI job while a person decides."""
    import asyncio
    from types import SimpleNamespace

    from prefect.states import Completed, Failed, Suspended

    from deployments.ci import Watched, watch

    train, deploy = uuid4(), uuid4()
    tagged = {f"training-run:{train}": [SimpleNamespace(id=deploy, name="deploy-fraud-v3")]}
    lines: list[str] = []
    client = FakePrefect({train: Completed(), deploy: Suspended(timeout_seconds=3600)}, tagged)
    runs = [Watched(model="fraud", flow_run_id=train, name="train-fraud", reused=False)]
    code = asyncio.run(watch(client, runs, lines.append, poll_s=0, ui_url="http://ui/"))
    assert code == 0
    assert (f"[fraud] deploy-fraud-v3: waits for approval (no job is held): "
            f"http://ui/runs/flow-run/{deploy} or `mlops approve fraud`") in lines
    client.states[deploy] = Failed(message="smoke test failed")
    runs = [Watched(model="fraud", flow_run_id=train, name="train-fraud", reused=False)]
    assert asyncio.run(watch(client, runs, lines.append, poll_s=0)) == 1


def test_ci_runs_on_a_gitlab_ci_pool_train_this_commits_branch():
    import asyncio

    from deployments.ci import start_runs

    ctx = CiContext.from_env({"CI_COMMIT_MESSAGE": "train damage", "CI_PIPELINE_ID": "9",
                              "CI_COMMIT_REF_NAME": "feature/x", "CI_MERGE_REQUEST_IID": "5"})
    gitlab = FakePrefect({})
    asyncio.run(start_runs(gitlab, ctx, ["damage"]))
    [made] = gitlab.created
    assert made["job_variables"]["ref"] == "feature/x"
    assert made["job_variables"]["env"] == {"MLOPS_DEVICE": "cuda", "CI_MERGE_REQUEST_IID": "5",
                                            "CI_COMMIT_REF_NAME": "feature/x",
                                            "CI_PIPELINE_ID": "9"}
    process = FakePrefect({}, pool_type="process")
    asyncio.run(start_runs(process, ctx, ["damage"]))
    assert "ref" not in process.created[0]["job_variables"]


def test_ci_reads_the_run_state_name_not_its_text():
    """A run that ended in the named state GateRejected exits 3; a plain Failed run whose message
    happens to say "GateRejected" exits 1 (the state's name decides, from errors.STATE_EXITS)."""
    import asyncio

    from prefect.states import Failed

    from deployments.ci import Watched, watch

    def code(state) -> int:
        run = uuid4()
        client = FakePrefect({run: state})
        runs = [Watched(model="fraud", flow_run_id=run, name="train-fraud", reused=False)]
        return asyncio.run(watch(client, runs, lambda line: None, poll_s=0))

    assert code(Failed(name="GateRejected", message="fraud gate rejected: auc")) == 3
    assert code(Failed(message="Flow run encountered an exception: GateRejected: x")) == 1
    assert code(Failed(name="Rejected", message="fraud v3 rejected by alice: no")) == 1
