"""Notebook training: the shipped example notebook executed by papermill through the flow,
the executed notebook and its metrics in MLflow; a failing cell fails the run, logged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.notebook import notebook_training
from mlops.cli import app
from tasks.training.notebook import NotebookFailed

# whole training or deploy flows per test: `make test` runs this module, the quick subset
# (`make test-fast`) leaves it out (docs/testing.md)
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_example_notebook_trains_and_is_logged(write_config, registry):
    write_config("fraud", rows=2500)
    result = notebook_training("notebooks/train_fraud.ipynb")
    assert 0.5 < result.metrics["test_roc_auc"] <= 1
    reg = registry()
    run = reg.client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["notebook.is_local_development"] == "False"
    assert run.data.params["notebook.device"] == "cpu"
    files = {f.path for f in reg.client.list_artifacts(result.run_id, "notebook")}
    assert files == {"notebook/train_fraud.executed.ipynb"}
    assert "model.ubj" in {f.path for f in reg.client.list_artifacts(result.run_id)}
    executed = json.loads(Path(reg.client.download_artifacts(
        result.run_id, "notebook/train_fraud.executed.ipynb")).read_text())
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert "is_local_development = False" in "".join(injected[0]["source"])


def test_failing_cell_fails_the_run_and_keeps_the_executed_notebook(home, registry, tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("is_local_development = True\ndevice = 'cpu'\n"
                                          "mlflow_run_id = None", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("raise ValueError('column claim_amount is empty')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(NotebookFailed, match="ValueError: column claim_amount is empty"):
        notebook_training(str(path))
    reg = registry()
    [run] = reg.client.search_runs([reg.client.get_experiment_by_name("notebooks/broken")
                                    .experiment_id])
    assert run.info.status == "FAILED"
    assert [f.path for f in reg.client.list_artifacts(run.info.run_id, "notebook")] == [
        "notebook/broken.executed.ipynb"]


def test_bad_notebook_arguments_are_one_line_errors(home, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(app, ["train", "notebooks/nope.ipynb"])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    untagged = tmp_path / "plain.ipynb"
    untagged.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                    "nbformat_minor": 5}))
    result = runner.invoke(app, ["train", str(untagged)])
    assert result.exit_code == 2 and "no cell tagged 'parameters'" in result.stderr
