"""Integrity through GitLab's MLflow API: the manifest travels inside model.tar.gz and its digest
in the version's creation tags (GitLab cannot add tags later); a feature spec or loader
tampered with in GitLab's package is refused by every load, exit 1 naming the file."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from tasks.core import integrity
from tests.conftest import config_yaml
from tests.e2e.conftest import cli_env, mlops

pytestmark = pytest.mark.slow
NAME = "glsealed"


def repack(package, change, work: Path) -> bytes:
    """Change a file inside the package's model.tar.gz as stored in GitLab; the original back."""
    original = package.files["model.tar.gz"]
    unpacked = work / "unpacked"
    with tarfile.open(fileobj=io.BytesIO(original)) as tar:
        tar.extractall(unpacked, filter="data")
    change(unpacked)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for path in sorted(unpacked.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(unpacked)))
    package.files["model.tar.gz"] = out.getvalue()
    return original


def swap_classes(folder: Path) -> None:
    spec = folder / "artifacts" / "feature_spec.json"
    body = json.loads(spec.read_text())
    spec.write_text(json.dumps({**body, "classes": body["classes"][::-1]}))


def patch_loader(folder: Path) -> None:
    loader = folder / "pyfunc_model.py"
    loader.write_text(loader.read_text() + "\nimport os  # runs on every load\n")


def test_tampered_files_in_gitlab_are_refused_by_every_load(gitlab_mlflow, prefect_server,
                                                           tmp_path):
    fake = gitlab_mlflow
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / f"{NAME}.yaml").write_text(config_yaml(
        name=NAME, rows=1500, extra="deploy:\n  staging:\n    smoke: {max_latency_ms: 2000}\n"))
    env = cli_env(MLFLOW_TRACKING_URI=fake.url, MLFLOW_TRACKING_TOKEN=fake.token,
                  PREFECT_API_URL=prefect_server, MLOPS_HOME=str(tmp_path / "state"),
                  MLOPS_CONFIG_DIR=str(tmp_path / "configs"), MLOPS_DEVICE="cpu")
    promoted = mlops(["run", NAME, "--as", "alice"], env)  # intact: verified through GitLab
    assert promoted.returncode == 0, promoted.stdout[-2000:] + promoted.stderr[-2000:]
    version = fake.ml.version(NAME, "1.0.0")
    digest = version.metadata[integrity.TAG]  # a creation tag: GitLab cannot add one later
    training = next(c for c in fake.runs_of(f"[model]{NAME}")
                    if c.eid == version.metadata["mlops.training_run_id"])
    assert training.params[integrity.TAG] == digest
    with tarfile.open(fileobj=io.BytesIO(version.package.files["model.tar.gz"])) as tar:
        assert integrity.MANIFEST in tar.getnames()

    batch = tmp_path / "batch.parquet"
    from tasks.training.synthetic import generate_claims

    generate_claims(500, seed=4).to_parquet(batch)
    for change, named, command in (
            (swap_classes, "artifacts/feature_spec.json was changed",
             ["score", NAME, "--input", str(batch), "--output", str(tmp_path / "s.parquet")]),
            (patch_loader, "pyfunc_model.py was changed",
             ["monitor", NAME, "--input", str(batch)])):
        original = repack(version.package, change, tmp_path / change.__name__)
        refused = mlops(command, env)
        assert refused.returncode == 1, refused.stdout[-2000:] + refused.stderr[-2000:]
        [line] = refused.stderr.strip().splitlines()
        assert line.startswith(f"error: {NAME} v1.0.0 failed its integrity check: {named}")
        version.package.files["model.tar.gz"] = original
    assert not (tmp_path / "s.parquet").exists()
    assert fake.token not in json.dumps(training.params) + json.dumps(training.metadata)
