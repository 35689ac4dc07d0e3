"""Integrity through GitLab's MLflow API: the manifest travels inside model.tar.gz and its digest
in the version's creation tags (GitLab cannot add tags later); a feature spec or loader
tampered with in GitLab's package is refused by every load, exit 1 naming the file."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import mlflow
import pytest

from tasks.core import integrity
from tests.conftest import config_yaml
from tests.e2e.conftest import cli_env, mlops

pytestmark = pytest.mark.slow
NAME = "glsealed"


def repack(upstream, run_id: str, work: Path, change) -> None:
    """Download the version's model.tar.gz from storage, change a file, upload it back."""
    packed = Path(upstream.download_artifacts(run_id, "model.tar.gz", str(work / "down")))
    unpacked = work / "unpacked"
    with tarfile.open(packed) as tar:
        tar.extractall(unpacked, filter="data")
    change(unpacked)
    out = work / "up" / "model.tar.gz"
    out.parent.mkdir(parents=True)
    with tarfile.open(out, "w:gz") as tar:
        for path in sorted(unpacked.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(unpacked)))
    upstream.log_artifact(run_id, str(out))


def swap_classes(folder: Path) -> None:
    spec = folder / "artifacts" / "feature_spec.json"
    body = json.loads(spec.read_text())
    spec.write_text(json.dumps({**body, "classes": body["classes"][::-1]}))


def patch_loader(folder: Path) -> None:
    loader = folder / "pyfunc_model.py"
    loader.write_text(loader.read_text() + "\nimport os  # runs on every load\n")


def test_tampered_files_in_gitlab_are_refused_by_every_load(gitlab_mlflow, mlflow_server,
                                                           tmp_path):
    proxy = gitlab_mlflow
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / f"{NAME}.yaml").write_text(config_yaml(name=NAME, rows=1500))
    env = cli_env(MLFLOW_TRACKING_URI=proxy.url, MLFLOW_TRACKING_TOKEN=proxy.token,
                  MLOPS_HOME=str(tmp_path / "state"),
                  MLOPS_CONFIG_DIR=str(tmp_path / "configs"), MLOPS_DEVICE="cpu")
    trained = mlops(["train", NAME], env)
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]

    upstream = mlflow.MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    [version] = upstream.search_model_versions(f"name='{NAME}'")
    digest = version.tags[integrity.TAG]  # a creation tag: GitLab cannot add one later
    training_run = version.tags["mlops.training_run_id"]
    assert upstream.get_run(training_run).data.params[integrity.TAG] == digest
    listing = tmp_path / "listing"
    with tarfile.open(upstream.download_artifacts(version.run_id, "model.tar.gz",
                                                 str(listing))) as tar:
        assert integrity.MANIFEST in tar.getnames()

    promoted = mlops(["promote", NAME, "--version", "1.0.0", "--as", "alice"], env)
    assert promoted.returncode == 0, promoted.stderr  # intact: verified through GitLab, promoted
    batch = tmp_path / "batch.parquet"
    from tasks.training.synthetic import generate_claims

    generate_claims(500, seed=4).to_parquet(batch)
    for change, named, command in (
            (swap_classes, "artifacts/feature_spec.json was changed",
             ["score", NAME, "--input", str(batch), "--output", str(tmp_path / "s.parquet")]),
            (patch_loader, "pyfunc_model.py was changed",
             ["monitor", NAME, "--input", str(batch)])):
        original = tmp_path / change.__name__
        repack(upstream, version.run_id, original, change)
        refused = mlops(command, env)
        assert refused.returncode == 1, refused.stdout[-2000:] + refused.stderr[-2000:]
        [line] = refused.stderr.strip().splitlines()
        assert line.startswith(f"error: {NAME} v1.0.0 failed its integrity check: {named}")
        upstream.log_artifact(version.run_id, str(original / "down" / "model.tar.gz"))
    assert not (tmp_path / "s.parquet").exists()
    assert proxy.token not in str(upstream.get_run(training_run).data)
