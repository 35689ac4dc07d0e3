"""`training.workers: N`: the training flow creates one study in PostgreSQL, N worker processes
(the hpo-worker flow, started here as processes instead of deployment runs) tune it, and the
flow registers exactly one version with the study's lineage; `mlops reproduce` retrains its
winning parameters and says why. Without a storage, N > 1 is one config line (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from mlops.cli import app
from tasks.core.redact import redact
from tests.conftest import config_yaml
from tests.e2e.conftest import BIN, REPO, cli_env, postgres_database
from tests.integration.conftest import versions

# whole training or deploy flows per test: `make test` runs this module, the quick subset
# (`make test-fast`) leaves it out (docs/testing.md)
pytestmark = pytest.mark.slow

runner = CliRunner()
WORKER = """
import sys
from flows.hpo_worker import hpo_worker
print("ran", hpo_worker(model=sys.argv[1], study_name=sys.argv[2], worker=int(sys.argv[3]),
                        device="cpu"))
"""


def _parallel_config(home, name: str, workers: int, n_trials: int) -> str:
    text = config_yaml(name=name, n_trials=n_trials).replace(
        f"n_trials: {n_trials},", f"n_trials: {n_trials}, workers: {workers},")
    assert f"workers: {workers}" in text
    (home / "configs" / f"{name}.yaml").write_text(text)
    return name


def test_several_workers_without_a_storage_is_one_line_exit_2(home, registry):
    """As a process: a CliRunner invocation that fails leaves logging handlers on its closed
    streams, which broke the next invocation of this file (RecursionError in logging)."""
    name = _parallel_config(home, "nostore", workers=3, n_trials=4)
    env = cli_env(MLOPS_HOME=os.environ["MLOPS_HOME"], MLOPS_CONFIG_DIR=str(home / "configs"),
                  MLOPS_DEVICE="cpu")
    result = subprocess.run([str(BIN / "mlops"), "train", name], cwd=REPO, env=env, text=True,
                            capture_output=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: training.workers: 3 needs a shared study"), lines[-5:]
    assert versions(registry(), name) == []


def test_workers_tune_one_study_and_one_version_carries_its_lineage(home, registry, monkeypatch):
    import tasks.training.hpo as hpo

    with postgres_database("hpo22_flow") as uri:
        url = uri.replace("postgresql://", "postgresql+psycopg://")
        monkeypatch.setenv("MLOPS_OPTUNA_STORAGE", url)
        name = _parallel_config(home, "par", workers=3, n_trials=6)
        procs: list[subprocess.Popen] = []

        def start_workers(model, study_name, workers, device, as_of):
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            procs.extend(subprocess.Popen([sys.executable, "-c", WORKER, model, study_name,
                                           str(w)], cwd=REPO, env=env, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                         for w in range(workers))
            return [str(p.pid) for p in procs]

        def wait_for_workers(run_ids, study_name, storage, n_trials):
            outputs = [p.communicate(timeout=600) for p in procs]
            assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-1500:] for o in outputs]
            return ["COMPLETED"] * len(procs)

        monkeypatch.setattr(hpo, "start_workers", start_workers)
        monkeypatch.setattr(hpo, "wait_for_workers", wait_for_workers)
        result = runner.invoke(app, ["train", name])
        assert result.exit_code == 0, (repr(result.exception), result.stderr[-1500:])
        assert len(procs) == 3

        reg = registry()
        [version] = versions(reg, name)
        tags = version.tags
        study = optuna.load_study(study_name=tags["tuning_study"], storage=url)
        finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
        assert len(finished) == 6 and len(study.trials) == 6
        assert tags["tuning_storage"] == redact(url) and tags["tuning_workers"] == "3"
        per_worker = dict(p.split("=") for p in tags["tuning_trials_per_worker"].split())
        assert sorted(per_worker) == ["0", "1", "2"]
        assert sum(int(n) for n in per_worker.values()) == 6
        assert json.loads(tags["tuning_params"]) == study.best_params
        card = (reg.download_version(name, "1", home / "v1").path / "model_card.md").read_text()
        assert "- tuning_workers: 3" in card and f"- tuning_study: {study.study_name}" in card

        rebuilt = runner.invoke(app, ["reproduce", name, "1"])
        assert rebuilt.exit_code == 0, rebuilt.output
        assert "tuned by 3 workers in parallel" in rebuilt.stdout
        assert "only its winner is; retraining the winning parameters" in rebuilt.stdout
        assert f"{name} v1: reproduced bit for bit" in rebuilt.stdout
