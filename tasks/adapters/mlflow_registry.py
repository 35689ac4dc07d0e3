"""The MLflow adapter: tracking runs, model versions, aliases, downloads and the audit trail.

Every MLflow call of the pipeline goes through `Registry` (or `GitLabRegistry`, its subclass
for GitLab's MLflow API); stages get one from `open_registry` and never build a client.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tasks.core.errors import IntegrityError, RegistryError, UnknownVersion
from tasks.core.lineage import file_sha256
from tasks.core.redact import redact


@dataclass(frozen=True)
class ModelVersionRef:
    name: str
    version: str
    run_id: str | None
    source: str
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class LocalVersion:
    """A registered version downloaded for checks: its folder, feature spec, input example and
    the SHA-256 of its booster file."""

    ref: ModelVersionRef
    path: Path
    spec: dict
    example: pd.DataFrame
    booster_sha256: str


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


class Registry:
    """Tracking runs and registered models of one MLflow tracking store."""

    max_param_chars = 6000

    def __init__(self, uri: str, artifact_root: Path | None = None):
        import mlflow
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.artifact_root = artifact_root
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    # -- tracking -------------------------------------------------------------------------
    def experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = None
        if self.artifact_root is not None and not is_http(self.uri):
            self.artifact_root.mkdir(parents=True, exist_ok=True)
            location = self.artifact_root.as_uri()
        return self.client.create_experiment(name, artifact_location=location)

    def start_run(self, experiment: str, run_name: str, tags: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment_id(experiment), run_name=run_name, tags=tags)
        return run.info.run_id

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    @contextlib.contextmanager
    def run(self, experiment: str, run_name: str, tags: dict[str, str]) -> Iterator[str]:
        """An MLflow run that ends FINISHED, or FAILED when the block raises."""
        run_id = self.start_run(experiment, run_name, tags)
        try:
            yield run_id
        except BaseException:
            self.end_run(run_id, "FAILED")
            raise
        self.end_run(run_id)

    def log_run(self, run_id: str, params: dict[str, object] | None = None,
                metrics: dict[str, float] | None = None) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
            params=[Param(k, clip(str(v), self.max_param_chars)) for k, v in (params or {}).items()],
        )

    def log_files(self, run_id: str, paths: list[str], artifact_path: str | None = None) -> None:
        for path in paths:
            self.client.log_artifact(run_id, path, artifact_path)

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.client.log_text(run_id, text, name)

    def run_url(self, run_id: str) -> str:
        if not is_http(self.uri):
            return f"run {run_id} (browse with: mlflow ui --backend-store-uri {redact(self.uri)})"
        exp = self.client.get_run(run_id).info.experiment_id
        return f"{redact(self.uri).rstrip('/')}/#/experiments/{exp}/runs/{run_id}"

    def run_metrics(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)

    def run_params(self, run_id: str) -> dict[str, str]:
        return dict(self.client.get_run(run_id).data.params)

    def all_runs(self, experiment: str) -> list:
        """Every run of an experiment, oldest first, a page of 1000 at a time (no filter and no
        server-side order: GitLab's API supports neither)."""
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            return []
        runs, token = [], None
        while True:
            page = self.client.search_runs([found.experiment_id], max_results=1000,
                                           page_token=token)
            runs.extend(page)
            token = page.token
            if not token or not page:
                break
        return sorted(runs, key=lambda run: run.info.start_time or 0)

    # -- registry -------------------------------------------------------------------------
    def _ref(self, mv) -> ModelVersionRef:
        return ModelVersionRef(name=mv.name, version=str(mv.version), run_id=mv.run_id,
                               source=mv.source, tags=dict(mv.tags or {}))

    def find_version(self, name: str, run_key: str) -> ModelVersionRef | None:
        """The version an earlier run with the same run key registered, if any (lowest first)."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.search_model_versions(
                f"name = '{name}' and tags.run_key = '{run_key}'")
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code):
                return None
            raise
        if not found:
            return None
        return self._ref(min(found, key=lambda mv: int(mv.version)))

    def get_version(self, name: str, version: str) -> ModelVersionRef | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._ref(self.client.get_model_version(name, version))
        except MlflowException:
            return None

    def require_version(self, name: str, version: str) -> ModelVersionRef:
        found = self.get_version(name, version)
        if found is None:
            raise UnknownVersion(f"{name} has no version {version} in the registry")
        return found

    def version_by_alias(self, name: str, alias: str) -> ModelVersionRef | None:
        version = self.alias_version(name, alias)
        return self.get_version(name, version) if version else None

    def alias_version(self, name: str, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def register(self, name: str, run_id: str, model_dir: Path, tags: dict[str, str],
                 description: str) -> ModelVersionRef:
        """Upload the model folder to the run and create a version; idempotent by run key."""
        existing = self.find_version(name, tags["run_key"])
        if existing is not None:
            return existing
        self.client.log_artifacts(run_id, str(model_dir), "model")
        self.ensure_registered_model(name)
        source = f"{self.client.get_run(run_id).info.artifact_uri}/model"
        mv = self.client.create_model_version(name, source=source, run_id=run_id, tags=tags,
                                              description=description)
        # an HTTP retry can replay the create after the server committed it: keep the first
        twins = self.client.search_model_versions(
            f"name = '{name}' and tags.run_key = '{tags['run_key']}'")
        keep = min(int(t.version) for t in twins)
        for twin in twins:
            if int(twin.version) != keep:
                self.client.delete_model_version(name, twin.version)
        if int(mv.version) != keep:
            mv = self.client.get_model_version(name, str(keep))
        return self._ref(mv)

    def ensure_registered_model(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(name, description="Registered by prefect-mlops.")

    def move_alias(self, name: str, alias: str, version: str | None) -> None:
        """Point alias at version, or remove it (None) to restore a state without one."""
        from mlflow.exceptions import MlflowException

        if version is not None:
            self.client.set_registered_model_alias(name, alias, version)
            return
        try:
            self.client.delete_registered_model_alias(name, alias)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise

    # -- model files ----------------------------------------------------------------------
    def download_model(self, ref: ModelVersionRef, dst: str) -> str:
        import mlflow

        return mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=dst)

    def download_version(self, name: str, version: str, into: Path) -> LocalVersion:
        """Download a version's model folder and check its booster against the registered
        SHA-256 before anything reads it; then read its feature spec and input example."""
        ref = self.require_version(name, version)
        expected = ref.tags.get("artifact_sha256")
        if not expected:
            raise IntegrityError(f"{name} v{version} has no artifact_sha256 tag: refusing to use "
                                 "an unverifiable model")
        local = Path(self.download_model(ref, str(into)))
        booster = next(local.rglob("*.ubj"), None)
        if booster is None:
            raise RegistryError(f"{name} v{version} has no booster file in the registry; train "
                                "it again")
        actual = file_sha256(booster)
        if actual != expected:
            raise IntegrityError(
                f"{name} v{version}: model artifact SHA-256 {actual[:12]}… does not match the "
                f"registered {expected[:12]}…; refusing to use it (artifact tampered?)")
        try:
            spec = json.loads(next(local.rglob("feature_spec.json")).read_text())
            payload = json.loads((local / "input_example.json").read_text())
        except (StopIteration, FileNotFoundError, ValueError):
            raise RegistryError(f"{name} v{version} is incomplete in the registry (no feature "
                                "spec or input example); train it again") from None
        example = pd.DataFrame(payload["data"], columns=payload["columns"])
        return LocalVersion(ref, local, spec, example, actual)

    def load_pyfunc(self, path: Path):
        """MLflow's pyfunc model from a downloaded (and verified) local folder."""
        import mlflow

        return mlflow.pyfunc.load_model(str(path))
