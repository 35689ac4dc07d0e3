"""Training progress through the real flow and a Prefect server: each trial's log line with the
time left, and a progress artifact per model that ends at 100 %."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from mlops.cli import app

# whole training or deploy flows per test: `make test` runs this module, the quick subset
# (`make test-fast`) leaves it out (docs/testing.md)
pytestmark = pytest.mark.slow

runner = CliRunner()


def run_logs(prefixes: list[str]) -> list[str]:
    """What the flow runs whose names start with these logged (runs are named
    `train-<model>-<day>`), as the Prefect server keeps it (the console's handler may write
    wherever logging was first set up in this process)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterName,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.client.schemas.sorting import LogSort

    with get_client(sync_client=True) as client:
        runs = [run for prefix in prefixes for run in client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=prefix)))
            if run.name.startswith(prefix)]
        logs = client.read_logs(log_filter=LogFilter(
            flow_run_id=LogFilterFlowRunId(any_=[r.id for r in runs])), sort=LogSort.TIMESTAMP_ASC)
    return [entry.message for entry in logs]


def test_training_two_models_logs_time_left_and_fills_a_progress_bar(write_config):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    first, second = write_config("prog-a", n_trials=2), write_config("prog-b", "regression",
                                                                      n_trials=2)
    result = runner.invoke(app, ["train", first, second])
    assert result.exit_code == 0, result.output
    assert "tuning 4 trials over 2 models in turn (prog-a 2, prog-b 2)" in result.stdout
    deadline, said = time.monotonic() + 30, []
    # the runs are final before their last log batch reaches the server: ask until it has it
    while not any(m.startswith("prog-b (2/2): trial 2/2") for m in said) \
            and time.monotonic() < deadline:
        said = run_logs([f"train-{first}-", f"train-{second}-"])
        time.sleep(0.5)
    a_lines = [m for m in said if m.startswith("prog-a (1/2): trial ")]
    assert len(a_lines) == 2, result.output[-3000:]
    assert "elapsed" in a_lines[0] and "whole run about" in a_lines[0]
    assert a_lines[1].startswith("prog-a (1/2): trial 2/2 (100%)")
    b_last = [m for m in said if m.startswith("prog-b (2/2): trial 2/2 (100%)")]
    assert b_last and "whole run" not in b_last[0]  # nothing after the last model
    with get_client(sync_client=True) as client:
        for model in (first, second):
            found = client.read_artifacts(artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[f"training-progress-{model}"])))
            assert found, model
            latest = max(found, key=lambda a: a.updated)
            assert latest.type == "progress" and float(latest.data) == 100.0
            assert f"{model} (" in latest.description and "trial 2/2" in latest.description
