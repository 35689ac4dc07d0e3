"""GitLab's MLflow-compatible API (`…/api/v4/projects/<id>/ml/mlflow`) as tracking server and
model registry, using only what GitLab implements.

GitLab maps experiments and runs (candidates) and registered models and versions, but:
- a version is a semantic version (tag `gitlab.version`); its API `version` is a database id;
- no aliases can be written and no version tags after creation, no version search: the
  staging/champion pointers are an append-only log of runs in experiment `aliases/<model>`, the
  version a training run registered is a tag on that run (`mlops.registered_version`);
- a run's params and tags can be written once each; params hold at most 250 characters;
- `search_runs` reads one experiment, ignores filters and orders only by a few columns: runs are
  paged through and filtered here;
- artifacts go to a generic package with flat file names (no folders): `plots/roc.png` becomes
  `plots-roc.png`, a model version's folder travels as one `model.tar.gz` (+ its card) in the
  version's own run and is unpacked on download;
- models are served from that downloaded copy (MLflow cannot resolve `models:/` there).

A call GitLab does not implement (its router answers 404 `{"error":"404 Not Found"}`) fails with
one line naming the call."""

from __future__ import annotations

import functools
import re
import shutil
import tarfile
import tempfile
import warnings
from pathlib import Path

from tasks.adapters import audit_store
from tasks.adapters.mlflow_registry import ModelVersionRef, Registry
from tasks.core import chain
from tasks.core.errors import RegistryError
from tasks.core.redact import redact

GITLAB_MLFLOW = re.compile(r"/api/v4/projects/(?P<project>[^/]+)/ml/mlflow/?$")
REGISTERED = "mlops.registered_version"
TRAINING_RUN = "mlops.training_run_id"
PACKED = "model.tar.gz"
MAX_PARAM_CHARS = 250
_UNKNOWN_ROUTE = re.compile(r"endpoint (?P<endpoint>\S+) failed with error code 404|"
                            r"'error': '404 Not Found'|404 Client Error: Not Found for url: "
                            r"(?P<url>\S+)")


def is_gitlab_mlflow(uri: str) -> bool:
    return bool(GITLAB_MLFLOW.search(uri.split("?")[0]))


class UnsupportedByGitLab(RegistryError):
    """A call GitLab's MLflow API does not implement."""


class GuardedClient:
    """An MlflowClient whose calls that GitLab does not route fail with one line naming them."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            try:
                return attr(*args, **kwargs)
            except Exception as exc:
                found = _UNKNOWN_ROUTE.search(str(exc))
                if found is None:
                    raise
                where = found.group("endpoint") or redact(found.group("url") or "")
                raise UnsupportedByGitLab(
                    f"GitLab's MLflow API does not support {name}"
                    + (f" ({where.rstrip('.')} answered 404 Not Found)" if where else "")
                    + "; use an MLflow tracking server for this") from None

        return call


def flat_name(artifact_path: str | None, name: str) -> str:
    """GitLab packages hold flat file names: `plots/roc.png` → `plots-roc.png`."""
    full = f"{artifact_path.strip('/')}/{name}" if artifact_path else name
    return full.replace("/", "-")


def semver_key(version: str) -> tuple[int, int, int]:
    parts = [int(p) for p in re.findall(r"\d+", version)[:3]]
    return tuple(parts + [0] * (3 - len(parts)))  # type: ignore[return-value]


def next_patch(latest: str | None) -> str:
    if latest is None:
        return "1.0.0"
    major, minor, patch = semver_key(latest)
    return f"{major}.{minor}.{patch + 1}"


class GitLabRegistry(Registry):
    """Registry on GitLab's MLflow API; same interface, GitLab's rules."""

    max_param_chars = MAX_PARAM_CHARS

    def __init__(self, uri: str, job_id: str | None = None, project_url: str | None = None,
                 audit_key: bytes | None = None):
        super().__init__(uri)
        self.client = GuardedClient(self.client)
        self.job_id = job_id
        self.project_url = project_url
        self.audit_key = audit_key

    # -- tracking -------------------------------------------------------------------------
    def start_run(self, experiment: str, run_name: str, tags: dict[str, str]) -> str:
        """Runs of a CI job carry gitlab.CI_JOB_ID: GitLab links them to the job."""
        job = {"gitlab.CI_JOB_ID": self.job_id} if self.job_id else {}
        return super().start_run(experiment, run_name, {**tags, **job})

    def log_files(self, run_id: str, paths: list[str], artifact_path: str | None = None) -> None:
        with tempfile.TemporaryDirectory(prefix="mlops-gitlab-") as tmp:
            for path in paths:
                flat = Path(tmp) / flat_name(artifact_path, Path(path).name)
                shutil.copyfile(path, flat)
                self.client.log_artifact(run_id, str(flat))

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.client.log_text(run_id, text, flat_name(None, name))

    def run_url(self, run_id: str) -> str:
        experiment = self.client.get_run(run_id).info.experiment_id
        if self.project_url:
            return f"{self.project_url.rstrip('/')}/-/ml/experiments/{experiment}"
        return f"GitLab experiment {experiment}, run {run_id} ({redact(self.uri)})"

    # -- registry -------------------------------------------------------------------------
    def _ref(self, mv) -> ModelVersionRef:
        tags = dict(mv.tags or {})
        semver = (list(mv.aliases or []) or [tags.get("gitlab.version", str(mv.version))])[0]
        return ModelVersionRef(name=mv.name, version=semver, run_id=tags.get(TRAINING_RUN),
                               source=mv.source, tags=tags)

    def find_version(self, name: str, run_key: str) -> ModelVersionRef | None:
        """The version a training run with this run key registered (tag on the run)."""
        registered = sorted({run.data.tags[REGISTERED] for run in self.all_runs(name)
                             if run.data.tags.get("run_key") == run_key
                             and run.data.tags.get(REGISTERED)}, key=semver_key)
        for version in registered:
            found = self.get_version(name, version)
            if found is not None:
                return found
        return None

    def _latest(self, name: str) -> str | None:
        with warnings.catch_warnings():  # GitLab answers with the highest semantic version
            warnings.simplefilter("ignore", FutureWarning)
            latest = self.client.get_latest_versions(name)
        return self._ref(latest[0]).version if latest else None

    def register(self, name: str, run_id: str, model_dir: Path, tags: dict[str, str],
                 description: str) -> ModelVersionRef:
        """Create the next semantic version, upload the packed model folder to the version's
        run, then tag the training run with it; idempotent by run key."""
        from mlflow.exceptions import MlflowException

        existing = self.find_version(name, tags["run_key"])
        if existing is not None:
            return existing
        self.ensure_registered_model(name)
        mv = None
        for _ in range(5):
            semver = next_patch(self._latest(name))
            try:
                mv = self.client.create_model_version(
                    name, source="", run_id=run_id, description=description,
                    tags={**tags, "gitlab.version": semver, TRAINING_RUN: run_id})
                break
            except MlflowException as exc:
                if exc.error_code not in ("INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS"):
                    raise
                # taken: by a concurrent registration, or by our own create replayed on retry
                mine = self.get_version(name, semver)
                if mine is not None and mine.tags.get("run_key") == tags["run_key"]:
                    mv = self.client.get_model_version(name, semver)
                    break
        if mv is None:
            raise RegistryError(f"could not allocate a GitLab version for {name} after 5 tries")
        with tempfile.TemporaryDirectory(prefix="mlops-pack-") as tmp:
            packed = Path(tmp) / PACKED
            with tarfile.open(packed, "w:gz") as tar:
                for path in sorted(model_dir.rglob("*")):
                    if path.is_file():
                        tar.add(path, arcname=str(path.relative_to(model_dir)))
            self.client.log_artifact(mv.run_id, str(packed))
            card = model_dir / "model_card.md"
            if card.exists():  # readable on the version's page
                self.client.log_artifact(mv.run_id, str(card))
        self.client.set_tag(run_id, REGISTERED, self._ref(mv).version)
        return self._ref(mv)

    # -- aliases: the audit chain is the pointer log ----------------------------------------
    def move_alias(self, name: str, alias: str, version: str | None) -> None:
        """GitLab cannot store aliases: the release stage's audit record of the move (a link of
        the hash chain, signed when an audit key is set) is the pointer; nothing to write here."""

    def alias_version(self, name: str, alias: str) -> str | None:
        """The newest move of the alias in the intact part of the audit chain: a pointer written
        outside the pipeline, dated in the future or breaking the chain does not count."""
        return audit_store.alias_from(chain.intact(audit_store.read(self, name) or [],
                                                   self.audit_key), alias)

    # -- model files --------------------------------------------------------------------------
    def download_model(self, ref: ModelVersionRef, dst: str) -> str:
        from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

        name, version = ref.name, ref.version
        mv = self.client.get_model_version(name, version)
        repo = MlflowArtifactsRepository(f"mlflow-artifacts:/{mv.version}", self.uri)
        if PACKED not in {f.path for f in repo.list_artifacts()}:
            raise RegistryError(f"{name} v{version} has no {PACKED} in GitLab (its upload did not "
                                "finish); train again to register a complete version")
        target = Path(dst) / "model"
        with tempfile.TemporaryDirectory(prefix="mlops-unpack-") as tmp:
            packed = repo.download_artifacts(PACKED, tmp)
            with tarfile.open(packed) as tar:
                tar.extractall(target, filter="data")
        return str(target)
