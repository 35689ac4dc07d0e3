"""The MLflow adapter: tracking runs, model versions, aliases, downloads and the audit trail.

Every MLflow call of the pipeline goes through `Registry` (or `GitLabRegistry`, its subclass
for GitLab's MLflow API); stages get one from `open_registry` and never build a client.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from tasks.adapters.model_version import (
    LocalVersion,
    ModelVersionRef,
    read_spec_and_example,
    run_page,
)
from tasks.core import integrity
from tasks.core.errors import IntegrityError, RegistryError, UnknownVersion
from tasks.core.lineage import file_sha256
from tasks.core.redact import redact, redact_values, scrubbed, scrubbing

log = logging.getLogger("mlops.registry")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


class Registry:
    """Tracking runs and registered models of one MLflow tracking store."""

    max_param_chars = 6000
    serves_artifact_files = True  # an MLflow server answers /get-artifact (artifact_links.py)

    def __init__(self, uri: str, artifact_root: Path | None = None, ui_url: str | None = None,
                 endpoint: str | None = None):
        """uri: the store (it names the audit anchors); endpoint: the server that serves it,
        when the client should go through one (the local stack's, for its SQLite file: one
        process writes the file, and the client loads no SQL store of its own)."""
        import mlflow
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.artifact_root = artifact_root
        self.ui_url = ui_url  # an MLflow UI that shows this store (the local stack's server)
        # MLflow's own functions (and, through MLFLOW_TRACKING_URI, which this also sets, every
        # Settings read later and every child process) keep the store; only the client goes to
        # the endpoint
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        client_uri = endpoint or uri
        # the client's errors name the server's URL, credentials included: they leave redacted
        self.client = scrubbed(MlflowClient(tracking_uri=client_uri, registry_uri=client_uri))

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

    def training_experiment(self, model: str) -> str:
        """The experiment a model's training runs go to."""
        return model

    def start_run(self, experiment: str, run_name: str, tags: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment_id(experiment), run_name=run_name,
                                     tags=redact_values(tags))
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

    def log_run(self, run_id: str, params: Mapping[str, object] | None = None,
                metrics: dict[str, float] | None = None) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
            params=[Param(k, clip(v, self.max_param_chars))
                    for k, v in redact_values(params or {}).items()],
        )

    def log_files(self, run_id: str, paths: list[str], artifact_path: str | None = None) -> None:
        for path in paths:
            self.client.log_artifact(run_id, path, artifact_path)

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.client.log_text(run_id, redact(text), name)

    def run_text(self, run_id: str, name: str) -> str | None:
        """The artifact `name` of the run as text (a model card, a stored report); None when
        the run does not have it."""
        from mlflow.exceptions import MlflowException

        with tempfile.TemporaryDirectory(prefix="mlops-read-") as tmp:
            try:
                path = self.client.download_artifacts(run_id, name, tmp)
            except (MlflowException, OSError):
                return None
            return Path(path).read_text(errors="replace")

    def run_url(self, run_id: str) -> str:
        return run_page(redact(self.uri), self.ui_url, run_id,
                        lambda: self.client.get_run(run_id).info.experiment_id)

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
        runs: list = []
        token = None
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

    def versions(self, name: str) -> list[ModelVersionRef]:
        """Every version of a model, lowest first ([] when the model is not registered)."""
        found = self.client.search_model_versions(f"name = '{name}'")
        return [self._ref(mv) for mv in sorted(found, key=lambda mv: int(mv.version))]

    def require_version(self, name: str, version: str) -> ModelVersionRef:
        found = self.get_version(name, version)
        if found is None:
            raise UnknownVersion(f"{name} has no version {version} in the registry")
        return found

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
        mv = self.client.create_model_version(name, source=source, run_id=run_id,
                                              tags=redact_values(tags), description=description)
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
        """The version's folder, downloaded into a new folder `model` under dst."""
        import mlflow

        target = Path(dst) / "model"
        target.mkdir(parents=True)
        with scrubbing():
            mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=str(target))
        (target / "registered_model_meta").unlink(missing_ok=True)  # the client writes it
        return str(target)

    def manifest_digest(self, ref: ModelVersionRef) -> str | None:
        """The registered SHA-256 of a version's integrity manifest: its tag, which must agree
        with the param its training run recorded (params cannot change, tags can)."""
        from mlflow.exceptions import MlflowException

        tag = ref.tags.get(integrity.TAG)
        try:
            anchor = self.run_params(ref.run_id).get(integrity.TAG) if ref.run_id else None
        except MlflowException:  # gone for good: a tag alone proves nothing, so never silently
            raise IntegrityError(f"{ref.name} v{ref.version}: the training run that recorded its "
                                 f"{integrity.TAG} is gone; refusing it (restore it, or retrain)") from None
        if tag and anchor and tag != anchor:
            raise IntegrityError(f"{ref.name} v{ref.version}: its {integrity.TAG} tag differs "
                                 "from the one its training run recorded; refusing it (tag "
                                 "altered?)")
        return tag or anchor

    def require_manifest(self, name: str, version: str) -> str:
        """The digest of the version's manifest; a version without one cannot be promoted."""
        found = self.manifest_digest(self.require_version(name, version))
        if not found:
            raise IntegrityError(f"{integrity.unsealed(f'{name} v{version}')}: it cannot be "
                                 "promoted; train it again")
        return found

    def download_version(self, name: str, version: str, into: Path,
                         require_manifest: bool = False) -> LocalVersion:
        """Download a version's model folder and verify every file against its registered
        manifest, and the booster against artifact_sha256, before anything reads it. A version
        registered before manifests loads with a warning (refused with require_manifest)."""
        ref = self.require_version(name, version)
        label, manifest = f"{name} v{version}", self.manifest_digest(ref)
        if manifest is None and require_manifest:
            self.require_manifest(name, version)
        expected = ref.tags.get("artifact_sha256")
        if not expected:
            raise IntegrityError(f"{label} has no artifact_sha256 tag: refusing to use an "
                                 "unverifiable model")
        local = Path(self.download_model(ref, str(into)))
        problem = integrity.failure(label, local, manifest)
        if problem:
            raise IntegrityError(problem)
        if manifest is None:
            log.warning("%s: only its booster is verified; train and promote a new version",
                        integrity.unsealed(label))
        booster = next(local.rglob("*.ubj"), None)
        if booster is None:
            raise RegistryError(f"{label} has no booster file in the registry; train it again")
        actual = file_sha256(booster)
        if actual != expected:
            raise IntegrityError(
                f"{label}: model artifact SHA-256 {actual[:12]}… does not match the registered "
                f"{expected[:12]}…; refusing to use it (artifact tampered?)")
        read = read_spec_and_example(local)
        if read is None:
            raise RegistryError(f"{label} is incomplete in the registry (no feature spec or "
                                "input example); train it again")
        return LocalVersion(ref, local, *read, actual, manifest)

    def load_pyfunc(self, path: Path):
        """MLflow's pyfunc model from a downloaded (and verified) local folder."""
        import mlflow

        return mlflow.pyfunc.load_model(str(path))
