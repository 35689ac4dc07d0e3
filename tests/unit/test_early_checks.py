"""Bad batch inputs, outputs and model names are refused before any flow run exists (one line,
exit 2, no run, no failure hook), and every flow names its runs after what they do."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

import mlops.batch
from flows.approval_expiry import approval_expiry
from flows.monitoring import monitoring
from flows.notebook import notebook_training
from flows.scoring import batch_scoring
from flows.training import training_pipeline
from mlops.cli import app
from tasks.core.runnames import describe
from tasks.training.synthetic import generate_claims
from tests.conftest import config_yaml

runner = CliRunner()


@pytest.fixture
def no_runs(tmp_path, monkeypatch):
    """A configured model, and a run_flow that records any flow run the command would start."""
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "fraud.yaml").write_text(config_yaml(name="fraud"))
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("MLOPS_CONFIG_DIR", str(configs))
    started: list[object] = []
    monkeypatch.setattr(mlops.batch, "run_flow", lambda run: started.append(run))
    monkeypatch.chdir(tmp_path)
    return started


def _refused(args: list[str], started: list[object]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert started == [], "a flow run was started for bad input"
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_a_missing_input_is_refused_before_any_run(no_runs):
    line = _refused(["score", "fraud", "--input", "nope.parquet", "--output", "out.parquet"],
                    no_runs)
    assert "nope.parquet does not exist" in line
    line = _refused(["monitor", "fraud", "--input", "nope.parquet"], no_runs)
    assert "nope.parquet does not exist" in line


def test_a_dated_input_is_checked_for_its_day(no_runs, tmp_path):
    generate_claims(20, seed=1).to_parquet(tmp_path / "claims-2026-01-02.parquet")
    line = _refused(["monitor", "fraud", "--input", "claims-{date}.parquet", "--day",
                     "2026-01-03"], no_runs)
    assert "claims-2026-01-03.parquet does not exist" in line
    result = runner.invoke(app, ["monitor", "fraud", "--input", "claims-{date}.parquet",
                                 "--day", "2026-01-02"])
    assert len(no_runs) == 1, result.output  # the day's file exists: the run starts


@pytest.mark.parametrize("args, says", [
    (["--input", "claims.txt", "--output", "out.parquet"], "input must be .parquet, .csv"),
    (["--input", "claims.parquet", "--output", "out.json"], "output must be .parquet, .csv"),
    (["--input", "claims.parquet", "--output", "folder.parquet"], "is a folder"),
])
def test_bad_locations_are_refused_before_any_run(no_runs, tmp_path, args, says):
    generate_claims(20, seed=1).to_parquet(tmp_path / "claims.parquet")
    (tmp_path / "folder.parquet").mkdir()
    assert says in _refused(["score", "fraud", *args], no_runs)


def test_an_unknown_model_is_refused_before_any_run(no_runs, tmp_path):
    generate_claims(20, seed=1).to_parquet(tmp_path / "claims.parquet")
    _refused(["score", "nosuchmodel", "--input", "claims.parquet", "--output", "o.parquet"],
             no_runs)


def test_good_locations_start_the_run(no_runs, tmp_path):
    generate_claims(20, seed=1).to_parquet(tmp_path / "claims.parquet")
    result = runner.invoke(app, ["score", "fraud", "--input", "claims.parquet", "--output",
                                 "new/folder/scores.parquet", "--input", "claims.parquet"])
    assert len(no_runs) == 1, result.output


@pytest.mark.parametrize("flow, parameters, expected", [
    (batch_scoring, {"model": "fraud", "input": "x", "output": "y", "day": date(2026, 1, 2)},
     "score-fraud-2026-01-02"),
    (batch_scoring, {"model": "fraud", "input": "x", "output": "y", "day": None},
     "score-fraud-{today}"),
    (monitoring, {"model": "damage", "input": "x", "day": None}, "monitor-damage-{today}"),
    (training_pipeline, {"model": "settlement", "as_of": None}, "train-settlement-{today}"),
    (training_pipeline, {"model": "fraud", "as_of": date(2025, 6, 30)}, "train-fraud-2025-06-30"),
    (notebook_training, {"notebook": "notebooks/train_fraud.ipynb"},
     "notebook-train_fraud-{today}"),
    (approval_expiry, {"flow_run_id": "abc"}, "approval-expiry-{today}"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_every_flow_names_its_runs(monkeypatch, flow, parameters, expected):
    from prefect.context import FlowRunContext

    from tasks.core import runnames

    monkeypatch.setattr(FlowRunContext, "get", classmethod(
        lambda cls: SimpleNamespace(parameters=parameters)))
    monkeypatch.setattr(runnames, "datetime", SimpleNamespace(
        now=lambda tz: SimpleNamespace(date=lambda: date(2026, 12, 6))))
    assert callable(flow.flow_run_name)
    assert flow.flow_run_name() == expected.replace("{today}", "2026-12-06")


def test_names_are_plain_text():
    assert describe("score", {"model": "fraud", "day": "2026-03-04"}) == "score-fraud-2026-03-04"
