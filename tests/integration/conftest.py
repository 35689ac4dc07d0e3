"""Integration tier: whole flows under one Prefect test server, MLflow in a temp folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import config_yaml


@pytest.fixture(scope="session", autouse=True)
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def point_at(base: Path, monkeypatch) -> Path:
    """MLOPS_HOME and the config dir under base; the MLflow store is sqlite inside it."""
    (base / "configs").mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("MLOPS_HOME", str(base / "state"))
    monkeypatch.setenv("MLOPS_CONFIG_DIR", str(base / "configs"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLOPS_DEVICE", "cpu")
    return base


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh MLOPS_HOME and config dir; the MLflow store is sqlite inside it."""
    return point_at(tmp_path, monkeypatch)


@pytest.fixture
def write_config(home):
    """Writes a model YAML into the config dir in use (a test on a restored snapshot has its
    own, see HomeSnapshot)."""
    def write(name: str = "tiny", task: str = "binary", **kw) -> str:
        folder = Path(os.environ["MLOPS_CONFIG_DIR"])
        (folder / f"{name}.yaml").write_text(config_yaml(task, name=name, **kw))
        return name

    return write


ANCHOR_PREFIX = "mlops-audit-head-"


def _is_sqlite(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


def _backup(src: Path, dst: Path) -> None:
    """SQLite's own copy, into the file in place: an engine an earlier test cached on dst (MLflow
    and Optuna keep them per URI) reads the restored pages, not a deleted file."""
    with contextlib.closing(sqlite3.connect(src)) as s, contextlib.closing(sqlite3.connect(dst)) as d:
        s.backup(d)


class HomeSnapshot:
    """A store trained once per module, restored in place before each test that uses it.

    Same path every time: MLflow keeps absolute artifact paths, and the audit anchors are named
    after the store's URI. Restored: every file under base (SQLite databases through their
    backup API, the rest copied), and the audit anchors kept as Prefect variables on the test
    server (the ones taken with the snapshot set back, any newer one removed), so every test
    starts from exactly the state the snapshot was taken in."""

    def __init__(self, base: Path):
        self.base, self.saved = base, base.parent / f"{base.name}-snapshot"
        self.variables: dict[str, object] = {}

    def take(self) -> None:
        shutil.rmtree(self.saved, ignore_errors=True)
        shutil.copytree(self.base, self.saved, ignore=shutil.ignore_patterns("*-journal"))
        for path in self.saved.rglob("*"):
            if path.is_file() and _is_sqlite(path):
                _backup(self.base / path.relative_to(self.saved), path)
        self.variables = {v.name: v.value for v in _anchor_variables()}

    def restore(self) -> None:
        for entry in sorted(self.base.rglob("*"), reverse=True):  # a folder after its files
            kept = self.saved / entry.relative_to(self.base)
            if entry.is_dir():
                if not kept.is_dir():
                    shutil.rmtree(entry)
            elif not (kept.is_file() and _is_sqlite(kept)):  # a database is restored in place
                entry.unlink()
        for path in sorted(self.saved.rglob("*")):
            target = self.base / path.relative_to(self.saved)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif target.exists():
                _backup(path, target)
            else:
                shutil.copy2(path, target)
        from prefect.variables import Variable

        for variable in _anchor_variables():
            if variable.name not in self.variables:
                Variable.unset(variable.name)
        for name, value in self.variables.items():
            Variable.set(name, value, overwrite=True)


def _anchor_variables() -> list:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return [v for v in client.read_variables() if v.name.startswith(ANCHOR_PREFIX)]


@pytest.fixture
def registry(home):
    from tasks.adapters.mlflow_registry import Registry
    from tasks.adapters.registries import open_registry
    from tasks.core.settings import Settings

    def open_() -> Registry:
        return open_registry(Settings.from_env())

    return open_


def versions(reg, name: str) -> list:
    from mlflow.exceptions import MlflowException

    try:
        return reg.client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return []
