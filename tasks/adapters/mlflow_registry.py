"""The only code that talks to MLflow tracking and the model registry."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tasks.core.errors import RegistryError, TrackingUnavailable
from tasks.core.settings import Settings, redact

os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


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
class Capabilities:
    """What the tracking backend supports; GitLab's MLflow API lacks aliases and version tags."""

    aliases: bool = True
    version_tags: bool = True


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def check_reachable(uri: str, retries: int, delay_s: float = 1.0) -> None:
    """Fail fast with one line when an HTTP tracking server does not answer (bounded retries)."""
    if not _is_http(uri):
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return
    url = uri.rstrip("/") + "/health"
    last = ""
    for attempt in range(1, retries + 1):
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status < 500:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return  # answered: auth or routing is the server's business, not reachability
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        if attempt < retries:
            time.sleep(delay_s * attempt)
    raise TrackingUnavailable(
        f"MLflow tracking server {redact(uri)} is unreachable after {retries} attempts ({last}); "
        "start it or point MLFLOW_TRACKING_URI at a running server"
    )


class Registry:
    """Tracking runs and registered models behind one interface."""

    max_param_chars = 6000

    def __init__(self, settings: Settings):
        import mlflow
        from mlflow.tracking import MlflowClient

        self.settings = settings
        self.uri = settings.tracking_uri
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self.capabilities = Capabilities()

    # -- tracking -------------------------------------------------------------------------
    def experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = None if _is_http(self.uri) else self.settings.artifact_root.as_uri()
        if location:
            self.settings.artifact_root.mkdir(parents=True, exist_ok=True)
        return self.client.create_experiment(name, artifact_location=location)

    def start_run(self, experiment: str, run_name: str, tags: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment_id(experiment), run_name=run_name, tags=tags)
        return run.info.run_id

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

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    def run_url(self, run_id: str) -> str:
        if not _is_http(self.uri):
            return f"run {run_id} (browse with: mlflow ui --backend-store-uri {redact(self.uri)})"
        exp = self.client.get_run(run_id).info.experiment_id
        return f"{redact(self.uri).rstrip('/')}/#/experiments/{exp}/runs/{run_id}"

    def run_metrics(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)

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

    def find_version_by_number(self, name: str, version: str) -> ModelVersionRef:
        return self._ref(self.client.get_model_version(name, version))

    def version_by_alias(self, name: str, alias: str) -> ModelVersionRef | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._ref(self.client.get_model_version_by_alias(name, alias))
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

    def set_alias(self, name: str, alias: str, version: str) -> None:
        if not self.capabilities.aliases:
            raise RegistryError(f"this registry has no aliases; cannot set {name}@{alias}")
        self.client.set_registered_model_alias(name, alias, version)

    def alias_version(self, name: str, alias: str) -> str | None:
        ref = self.version_by_alias(name, alias)
        return ref.version if ref else None

    def move_alias(self, name: str, alias: str, version: str | None) -> None:
        """Point alias at version, or remove it (None) to restore a state without one."""
        if version is None:
            from mlflow.exceptions import MlflowException

            try:
                self.client.delete_registered_model_alias(name, alias)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
            return
        self.set_alias(name, alias, version)

    def get_version(self, name: str, version: str) -> ModelVersionRef | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._ref(self.client.get_model_version(name, version))
        except MlflowException:
            return None

    def serving_uri(self, name: str, version: str, local_path: Path) -> str:
        """What `mlflow models serve -m` gets for a version downloaded to local_path."""
        return f"models:/{name}/{version}"

    def download_model(self, uri: str, dst: str) -> str:
        import mlflow

        return mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dst)

    # -- audit trail ----------------------------------------------------------------------
    def record_event(self, name: str, event: dict[str, str]) -> None:
        """Append one audit record: a run of experiment audit/<model> whose params (immutable in
        MLflow) hold the event. Nothing here updates or deletes an earlier record."""
        run_id = self.start_run(f"audit/{name}", f"{event['action']}-{event.get('to_version')}",
                                {"mlops.audit": "true", "model": name})
        self.log_run(run_id, params={k: v for k, v in event.items() if v not in (None, "")})
        self.end_run(run_id)

    def events(self, name: str) -> list[dict[str, str]]:
        return [dict(run.data.params) for run in self.all_runs(f"audit/{name}")]

    def load_pyfunc(self, uri: str):
        import mlflow

        return mlflow.pyfunc.load_model(uri)
