"""Fixed costs paid once (issue 25): the data hashed once per process, tree SHAP once per run,
read-only commands that import none of the training stack, and a training flow (and the CLI's
up-to-date check) that imports the training libraries only where it trains or scores."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.adapters.sinks import write_frame
from tasks.core.config import DataSpec
from tasks.core.settings import Settings
from tasks.training import fingerprint
from tasks.training.data import load_dataset
from tasks.training.synthetic import generate_claims
from tests.conftest import loopback_http

REPO = Path(__file__).resolve().parents[2]


class NoVersions:
    def find_version(self, name: str, run_key: str):
        return None


@pytest.fixture
def hashes(monkeypatch) -> list[str]:
    """The paths whose bytes were hashed, in order."""
    seen: list[str] = []
    digest = fingerprint._digest_file

    def counting(fs, path):
        seen.append(path)
        return digest(fs, path)

    monkeypatch.setattr(fingerprint, "_digest_file", counting)
    return seen


def test_the_up_to_date_check_and_the_flow_hash_the_data_file_once(tmp_path, make_config,
                                                                   hashes):
    path = tmp_path / "claims.parquet"
    write_frame(generate_claims(300, seed=5), path)
    cfg = make_config(data=f"data: {{source: file, path: '{path}'}}")
    assert fingerprint.up_to_date(cfg, Settings.from_env(), NoVersions()) is None
    data = load_dataset(cfg.data)  # what the flow's load-data task does next
    assert len(hashes) == 1
    assert data.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_changed_file_is_hashed_again(tmp_path, hashes):
    path = tmp_path / "claims.csv"
    write_frame(generate_claims(100, seed=1), path)
    spec = DataSpec(source="file", path=str(path))
    first = fingerprint.source_fingerprint(spec)
    assert fingerprint.source_fingerprint(spec) == first and len(hashes) == 1
    write_frame(generate_claims(120, seed=2), path)
    os.utime(path, ns=(1, 1))  # an older mtime than before: still a change
    second = fingerprint.source_fingerprint(spec)
    assert second != first and len(hashes) == 2


def test_the_reference_profile_reuses_the_evaluations_shap(tmp_path, make_config, monkeypatch):
    from tasks.batch.profiles import profile_training_data
    from tasks.contracts import explanations
    from tasks.core.tasktypes import task_type
    from tasks.training.evaluate import evaluate
    from tasks.training.train import feature_spec, split_rows, train_model
    from tasks.training.validate import validate_frame

    cfg = make_config(rows=600, n_trials=1)
    frame = generate_claims(600, seed=4)
    spec = feature_spec(frame, validate_frame(frame, cfg), cfg)
    splits = split_rows(spec.encode_target(frame[cfg.target]), cfg.training,
                        task_type(cfg.task))
    trained = train_model(frame, spec, splits, cfg.training, "cpu", "shap-once",
                          progress=lambda m: None)
    explained: list[int] = []
    contributions = explanations.contributions

    def counting(booster, matrix):
        explained.append(len(matrix))
        return contributions(booster, matrix)

    monkeypatch.setattr(explanations, "contributions", counting)
    report = evaluate.fn(df=frame, test_rows=splits.test, trained=trained, slices=cfg.slices,
                         min_slice_rows=cfg.gate.min_slice_rows, plot_dir=str(tmp_path))
    profile = profile_training_data.fn(frame=frame, rows=splits.train, trained=trained,
                                       report=report, bins=cfg.monitoring.bins)
    assert explained == [len(splits.test)]  # one computation, on the bounded test sample
    assert profile.attributions == report.attributions[explanations.ALL]


def bare_env(**extra: str) -> dict[str, str]:
    """This process's environment without the project's, MLflow's and Prefect's settings, plus
    extra: a child process that reads only what the test gives it."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLOPS_", "MLFLOW_", "PREFECT_"))}
    env.update(extra)
    return env


READ_ONLY = """
import json, sys
from mlops.cli import main
for args in (["history", "fraud"], ["audit", "verify", "fraud"], ["status", "fraud"]):
    sys.argv = ["mlops", *args]
    try:
        main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    print(json.dumps([args[0], sorted({m.split(".")[0] for m in sys.modules})]))
"""
TRAINING = {"xgboost", "matplotlib", "optuna", "sklearn", "shap", "papermill"}


def test_read_only_commands_import_no_training_stack_and_no_prefect_without_a_server(tmp_path):
    """`mlops history`, `audit verify` and `status` on a store without a Prefect server import
    neither XGBoost, matplotlib, Optuna nor scikit-learn, nor Prefect (`status` reads the
    schedules in prefect.yaml as plain YAML, with Prefect's croniter loaded as a plain module)."""
    env = bare_env(MLOPS_HOME=str(tmp_path / "home"), MLOPS_DEVICE="cpu")
    proc = subprocess.run([sys.executable, "-c", READ_ONLY], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = dict(json.loads(line) for line in proc.stdout.splitlines()
                  if line.startswith('["'))
    assert not TRAINING & set(loaded["history"]) and "prefect" not in loaded["history"]
    assert not TRAINING & set(loaded["audit"]) and "prefect" not in loaded["audit"]
    assert not TRAINING & set(loaded["status"]) and "prefect" not in loaded["status"]


UP_TO_DATE = """
import json, sys
import mlops.training
from mlops.cli import main
from mlops.reads import read_registry
from tasks.reports.format import fmt_any
from tasks.reports.progress import PLAN
from tasks.training.fingerprint import up_to_date
print(json.dumps(["up-to-date", sorted({m.split(".")[0] for m in sys.modules})]))
import flows.training
print(json.dumps(["flow", sorted({m.split(".")[0] for m in sys.modules})]))
"""
HEAVY = {"xgboost", "optuna", "optuna_integration", "sklearn", "matplotlib", "scipy"}
# what a cached re-run reads the registry without (over REST) and fingerprints the data without
NOT_CHECKING = HEAVY | {"mlflow", "prefect", "numpy", "pandas", "pyarrow"}


def test_the_training_flow_and_the_up_to_date_check_import_no_training_libraries():
    """A cached re-run (the CLI's up-to-date check) and a `--force` re-run that reuses a
    version import the training flow's modules but never train or score: XGBoost (and the
    scikit-learn and SciPy it pulls), Optuna and matplotlib are imported where they are used.
    The check's own modules import neither MLflow nor Prefect, nor numpy and pandas (the
    synthetic source's fingerprint is its spec: tasks/training/synthetic.py makes rows only
    when asked)."""
    env = bare_env(MLOPS_DEVICE="cpu")
    proc = subprocess.run([sys.executable, "-c", UP_TO_DATE], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = dict(json.loads(line) for line in proc.stdout.splitlines()
                  if line.startswith('["'))
    assert set(loaded) == {"up-to-date", "flow"}
    assert NOT_CHECKING & set(loaded["up-to-date"]) == set()
    assert HEAVY & set(loaded["flow"]) == set()


AT_EXIT = """
import atexit, gc, json, sys
from mlops.cli import main
atexit.register(lambda: print(json.dumps([gc.get_threshold(), gc.get_freeze_count()])))
sys.argv = ["mlops", "models"]
main()
"""


def test_the_cli_process_freezes_its_heap_before_the_interpreter_collects_it_on_exit():
    """`mlops` collects less often while it imports, and leaves what it holds at the end out of
    the interpreter's final collections (they walked the whole heap of Prefect, MLflow and
    pandas objects once more for nothing)."""
    env = bare_env()
    proc = subprocess.run([sys.executable, "-c", AT_EXIT], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    threshold, frozen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert threshold[0] >= 10_000
    assert frozen > 10_000  # the CLI's modules and objects, at least


@pytest.fixture
def mlflow_answering(monkeypatch):
    """A tracking server on loopback that answers every request with the given status; the
    tracking URI points at it."""
    answer = {"status": 401}
    with loopback_http(lambda path: (answer["status"], b"You are not authenticated.")) as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setenv("MLOPS_TRACKING_RETRIES", "1")
        yield answer


def test_a_tracking_server_that_wants_credentials_is_asked_through_mlflows_client(
        mlflow_answering, make_config, monkeypatch):
    """The up-to-date check reads over REST; a server that answers 401/403 (credentials only
    MLflow's client reads, e.g. MLFLOW_TRACKING_USERNAME) is asked through Registry instead,
    as before; any other error answer is still an error."""
    import mlops.training
    from tasks.adapters import registries
    from tasks.adapters.mlflow_rest import RestError
    from tasks.adapters.model_version import ModelVersionRef

    cfg = make_config(name="guarded")
    asked: list[str] = []

    class ThroughTheClient:
        def find_version(self, name: str, run_key: str):
            asked.append(name)
            return ModelVersionRef(name=name, version="4", run_id="r", source="",
                                   tags={"gate_metric": "roc_auc", "gate_value": "0.9"})

    monkeypatch.setattr(registries, "open_registry", lambda found: ThroughTheClient())
    rows: list[tuple[str, ...]] = []
    assert mlops.training._stale({"guarded": cfg}, rows) == []
    assert asked == ["guarded"] and rows[0][:2] == ("guarded", "4")

    mlflow_answering["status"] = 404
    with pytest.raises(RestError):
        mlops.training._stale({"guarded": cfg}, [])


SERVER_FIRST = """
import json, sys
import mlops.training
def probe():
    print(json.dumps(sys.argv[1:3] + ["prefect" in sys.modules]))
    raise SystemExit(0)
mlops.training.start_if_needed = probe
from mlops.cli import main
main()
"""


@pytest.mark.parametrize("args", [["train", "fraud", "--force"], ["run", "fraud"],
                                  ["run", "fraud", "--as", "make-run"]])
def test_the_temporary_server_starts_before_anything_imports_prefect(tmp_path, args):
    """`mlops train` and `mlops run` start the temporary Prefect server while they import the
    training stack: once Prefect is imported, start_if_needed leaves the start to Prefect,
    which boots its own server only at the first flow run, after every import."""
    env = bare_env(MLOPS_HOME=str(tmp_path / "home"), MLOPS_DEVICE="cpu")
    proc = subprocess.run([sys.executable, "-c", SERVER_FIRST, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == [*args[:2], False]


def test_prefect_hands_the_splits_to_a_task_without_walking_every_row():
    """A task's inputs are walked by Prefect to find futures (each list item visited): the
    split's row positions are arrays, a few visits instead of one per row."""
    import numpy as np
    from prefect.utilities.collections import visit_collection

    from tasks.core.config import parse_config
    from tasks.core.tasktypes import task_type
    from tasks.training.train import split_rows
    from tests.conftest import config_yaml

    training = parse_config(config_yaml("binary")).training
    splits = split_rows(np.arange(50_000) % 2, training, task_type("binary"))
    visited: list[object] = []
    visit_collection(splits, visit_fn=visited.append)
    assert len(visited) < 10, f"{len(visited)} values visited"
    assert len(splits.train) + len(splits.valid) + len(splits.test) == 50_000
    assert (np.diff(splits.test) > 0).all() and not splits.test.flags.writeable
