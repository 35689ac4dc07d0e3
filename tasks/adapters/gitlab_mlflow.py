"""GitLab's MLflow-compatible API (`…/api/v4/projects/<id>/ml/mlflow`) as tracking server and
model registry, using only what GitLab implements. Supported: GitLab 17.x and 18.x, with either
behaviour of `model-versions/create`: before GitLab MR !182777 it ignores `run_id` and gives each
version a new run of its own; since then it promotes the run given, which must be a run of the
model's own experiment `[model]<name>`.

GitLab maps experiments and runs (candidates) and registered models and versions, but:
- a model's training runs go to `[model]<name>` (GitLab creates it with the model): only its
  runs can become versions; older GitLab gets the training's params and metrics copied to the
  version's own run, so both show them on the version's page;
- a version is a semantic version (tag `gitlab.version`); its API `version` is a database id;
  a version tag needs a value (≤5,000 characters);
- no aliases can be written and no version tags after creation, no version search: the
  staging/champion pointers are the audit chain's moves (`audit/<model>`), the version a
  training run registered is a tag on that run (`mlops.registered_version`);
- a run's params and tags can be written once each; params hold at most 250 characters;
- `search_runs` reads one experiment, ignores filters and orders only by a few columns: runs are
  paged through and filtered here; `search_registered_models` is never used (GitLab's name-only
  filter refuses the prompt clause MLflow 3 adds);
- files go to ml_model packages with flat names (`plots/roc.png` becomes `plots-roc.png`); a
  version's model folder travels as one `model.tar.gz` (+ its card) in the version's package and
  is unpacked on download; models are served from that downloaded copy;
- two answers MLflow 3's client cannot parse are read as plain JSON here: `{"model_versions":
  [null]}` for a model without versions, and versions as raw rows in `registered-models/get`
  (some 17.x releases).

A call GitLab does not implement (its router answers 404 `{"error":"404 Not Found"}`) fails with
one line naming the call."""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.adapters import audit_store
from tasks.adapters.gitlab_rules import (
    GuardedClient,
    UnsupportedByGitLab,
    flat_name,
    gitlab_message,
    guarded,
    is_gitlab_mlflow,
    model_experiment,
    next_patch,
    same_host,
    semver_key,
    version_tags,
)
from tasks.adapters.mlflow_registry import ModelVersionRef, Registry, clip
from tasks.adapters.mlflow_rest import RestRegistry
from tasks.core import chain
from tasks.core.errors import ConfigError, RegistryError
from tasks.core.redact import redact, redact_values

__all__ = ["GitLabRegistry", "GitLabRestRegistry", "GuardedClient", "UnsupportedByGitLab",
           "flat_name", "is_gitlab_mlflow", "next_patch", "require_token"]
REGISTERED = "mlops.registered_version"
TRAINING_RUN = "mlops.training_run_id"
PACKED = "model.tar.gz"
MAX_PARAM_CHARS = 250
MAX_DESCRIPTION = 10_000  # model_version.rb: description ≤ 10,000 characters


def require_token(uri: str, token: str) -> str:
    """GitLab's MLflow API answers nothing without a token (sent as `Authorization: Bearer`)."""
    if not token:
        raise ConfigError(
            f"MLFLOW_TRACKING_URI {redact(uri)} is GitLab's MLflow API: set "
            "MLFLOW_TRACKING_TOKEN to a GitLab access token with the api scope")
    return token


class GitLabReads:
    """The reads GitLab answers its own way, one code for the full registry and for the REST
    reader of the read-only commands: a version is named by its semantic version, the versions
    are those the training runs registered, aliases come from the audit chain."""

    max_param_chars = MAX_PARAM_CHARS
    serves_artifact_files = False  # artifacts live in GitLab's package registry
    audit_key: chain.Key = None

    if TYPE_CHECKING:  # given by Registry or RestRegistry
        def all_runs(self, experiment: str) -> list: ...
        def get_version(self, name: str, version: str) -> ModelVersionRef | None: ...

    def _ref(self, mv) -> ModelVersionRef:
        tags = dict(mv.tags or {})
        semver = (list(mv.aliases or []) or [tags.get("gitlab.version", str(mv.version))])[0]
        return ModelVersionRef(name=mv.name, version=semver, run_id=tags.get(TRAINING_RUN),
                               source=mv.source, tags=tags)

    def find_version(self, name: str, run_key: str) -> ModelVersionRef | None:
        """The version a training run with this run key registered (tag on the run)."""
        registered = sorted({run.data.tags[REGISTERED]
                             for run in self.all_runs(model_experiment(name))
                             if run.data.tags.get("run_key") == run_key
                             and run.data.tags.get(REGISTERED)}, key=semver_key)
        for version in registered:
            found = self.get_version(name, version)
            if found is not None:
                return found
        return None

    def versions(self, name: str) -> list[ModelVersionRef]:
        """The versions the model's training runs registered (GitLab has no version search)."""
        found = {run.data.tags[REGISTERED] for run in self.all_runs(model_experiment(name))
                 if run.data.tags.get(REGISTERED)}
        refs = [self.get_version(name, v) for v in sorted(found, key=semver_key)]
        return [ref for ref in refs if ref is not None]

    def alias_version(self, name: str, alias: str) -> str | None:
        """The newest move of the alias in the intact part of the audit chain: a pointer written
        outside the pipeline, dated in the future or breaking the chain does not count."""
        return audit_store.alias_from(chain.intact(audit_store.read(self, name) or [],
                                                   self.audit_key), alias)


class GitLabRestRegistry(GitLabReads, RestRegistry):
    """What the read-only commands read of GitLab's MLflow API, over its REST API without
    importing MLflow; GitLab's rules as GitLabRegistry applies them."""

    def __init__(self, uri: str, token: str, audit_key: chain.Key = None):
        super().__init__(uri, require_token(uri, token))
        self.audit_key = audit_key

    def training_experiment(self, model: str) -> str:
        """`[model]<name>`; a read creates nothing (a model GitLab lacks has no runs there)."""
        return model_experiment(model)


class GitLabRegistry(GitLabReads, Registry):
    """Registry on GitLab's MLflow API; same interface, GitLab's rules."""

    def __init__(self, uri: str, job_id: str | None = None, project_url: str | None = None,
                 server_url: str | None = None, audit_key: chain.Key = None):
        super().__init__(uri)
        self.client = guarded(self.client)
        # GitLab looks gitlab.CI_JOB_ID up among its own jobs and answers 500 (after creating
        # the run) for one it does not know: send it only to the CI's own GitLab
        self.job_id = job_id if job_id and same_host(server_url, uri) else None
        self.project_url = project_url
        self.audit_key = audit_key

    def _rest(self, method: str, endpoint: str, **kwargs) -> dict | None:
        """One call read as plain JSON (MLflow's parser refuses some of GitLab's answers);
        None when GitLab says the resource does not exist."""
        from mlflow.utils.credentials import get_default_host_creds
        from mlflow.utils.rest_utils import http_request

        resp = http_request(get_default_host_creds(self.uri), f"/api/2.0/mlflow/{endpoint}",
                            method, **kwargs)
        body = resp.json() if resp.content else {}
        if resp.status_code == 404 and body.get("error_code") == "RESOURCE_DOES_NOT_EXIST":
            return None
        if resp.status_code != 200:
            raise RegistryError(f"GitLab's MLflow API answered {resp.status_code} to {endpoint}: "
                                f"{redact(resp.text[:300])}")
        return body

    # -- tracking -------------------------------------------------------------------------
    def training_experiment(self, model: str) -> str:
        """`[model]<name>`, made by GitLab with the model: the runs GitLab can promote."""
        self.ensure_registered_model(model)
        return model_experiment(model)

    def start_run(self, experiment: str, run_name: str, tags: dict[str, str]) -> str:
        """Runs of a CI job carry gitlab.CI_JOB_ID: GitLab links them to the job."""
        job = {"gitlab.CI_JOB_ID": self.job_id} if self.job_id else {}
        return super().start_run(experiment, run_name, {**tags, **job})

    def log_files(self, run_id: str, paths: list[str], artifact_path: str | None = None) -> None:
        with tempfile.TemporaryDirectory(prefix="mlops-gitlab-") as tmp:
            for path in paths:
                flat = Path(tmp) / flat_name(artifact_path, Path(path).name)
                flat.write_bytes(Path(path).read_bytes())
                self.client.log_artifact(run_id, str(flat))

    def log_text(self, run_id: str, text: str, name: str) -> None:
        super().log_text(run_id, text, flat_name(None, name))

    def run_url(self, run_id: str) -> str:
        experiment = self.client.get_run(run_id).info.experiment_id
        if self.project_url:
            return f"{self.project_url.rstrip('/')}/-/ml/experiments/{experiment}"
        return f"GitLab experiment {experiment}, run {run_id} ({redact(self.uri)})"

    # -- registry -------------------------------------------------------------------------
    def ensure_registered_model(self, name: str) -> None:
        """Create the model (and so `[model]<name>`) unless GitLab has it; read without MLflow's
        parser, which fails on the raw version rows some 17.x releases answer with."""
        from mlflow.exceptions import MlflowException

        if self._rest("GET", "registered-models/get", params={"name": name}) is not None:
            return
        try:
            self.client.create_registered_model(name, description="Registered by prefect-mlops.")
        except MlflowException as exc:  # GitLab answers RESOURCE_ALREADY_EXISTS to any refusal
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            if self._rest("GET", "registered-models/get", params={"name": name}) is None:
                raise RegistryError(
                    f"GitLab refused to create model {name}: not a valid GitLab model name, or "
                    f"the project has an experiment {model_experiment(name)} without a model "
                    "(rename or delete it)") from None

    def _latest(self, name: str) -> dict | None:
        """The highest version as GitLab lists it (`[null]` for none: MLflow cannot parse it)."""
        found = self._rest("POST", "registered-models/get-latest-versions", json={"name": name})
        versions = [v for v in (found or {}).get("model_versions") or [] if v]
        return versions[0] if versions else None

    def register(self, name: str, run_id: str, model_dir: Path, tags: dict[str, str],
                 description: str) -> ModelVersionRef:
        """Create the next semantic version from the training run, upload the packed model
        folder to the version's package, then tag the training run; idempotent by run key, and
        a retry resumes the version its run already made (GitLab promotes a run only once)."""
        existing = self.find_version(name, tags["run_key"])
        if existing is not None:
            return existing
        self.ensure_registered_model(name)
        mv = self._version_of_run(name, run_id) or self._create_version(name, run_id, tags,
                                                                          description)
        if mv.run_id != run_id:  # GitLab before !182777: the version has a run of its own
            trained = self.client.get_run(run_id).data
            self.log_run(mv.run_id, params=trained.params, metrics=trained.metrics)
        self._upload(mv.run_id, model_dir)
        if REGISTERED not in self.client.get_run(run_id).data.tags:
            self.client.set_tag(run_id, REGISTERED, self._ref(mv).version)
        return self._ref(mv)

    def _version_of_run(self, name: str, run_id: str):
        latest = self._latest(name)
        tags = {t["key"]: t["value"] for t in (latest or {}).get("tags") or []}
        if latest is None or tags.get(TRAINING_RUN) != run_id:
            return None
        return self.client.get_model_version(name, (latest.get("aliases") or [""])[0])

    def _create_version(self, name: str, run_id: str, tags: dict[str, str], description: str):
        """The next patch, or the version `registry.tags` pins with `gitlab.version`."""
        from mlflow.exceptions import MlflowException

        pinned = tags.get("gitlab.version")
        for _ in range(5):
            latest = self._latest(name)
            semver = pinned or next_patch((latest.get("aliases") or [None])[0] if latest else None)
            try:
                return self.client.create_model_version(
                    name, source="", run_id=run_id, description=clip(description, MAX_DESCRIPTION),
                    tags=version_tags({**redact_values(tags), "gitlab.version": semver,
                                       TRAINING_RUN: run_id}))
            except MlflowException as exc:
                refusal = gitlab_message(exc)
                taken = "already been taken" in refusal
                if not taken or pinned:
                    hint = " (registry.tags pins gitlab.version)" if taken else ""
                    raise RegistryError(f"GitLab refused version {semver} of {name}: "
                                        f"{refusal}{hint}") from None
                # taken: by a concurrent registration, or by our own create replayed on retry
                mine = self.get_version(name, semver)
                if mine is not None and mine.tags.get(TRAINING_RUN) == run_id:
                    return self.client.get_model_version(name, semver)
        raise RegistryError(f"could not allocate a GitLab version for {name} after 5 tries")

    def _upload(self, version_run: str, model_dir: Path) -> None:
        """To the run's address as GitLab gives it now, the version's package (MLflow's client
        keeps the address it saw before the run became a version)."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        repo = get_artifact_repository(self.client.get_run(version_run).info.artifact_uri)
        with tempfile.TemporaryDirectory(prefix="mlops-pack-") as tmp:
            packed = Path(tmp) / PACKED
            with tarfile.open(packed, "w:gz") as tar:
                for path in sorted(model_dir.rglob("*")):
                    if path.is_file():
                        tar.add(path, arcname=str(path.relative_to(model_dir)))
            repo.log_artifact(str(packed))
        card = model_dir / "model_card.md"
        if card.exists():  # readable on the version's page
            repo.log_artifact(str(card))

    # -- aliases: the audit chain is the pointer log ----------------------------------------
    def move_alias(self, name: str, alias: str, version: str | None) -> None:
        """GitLab cannot store aliases: the release stage's audit record of the move (a link of
        the hash chain, signed when an audit key is set) is the pointer; nothing to write here."""

    # -- model files --------------------------------------------------------------------------
    def download_model(self, ref: ModelVersionRef, dst: str) -> str:
        """From the version's package (the files route every supported GitLab has)."""
        from mlflow.utils.credentials import get_default_host_creds
        from mlflow.utils.rest_utils import http_request

        mv = self.client.get_model_version(ref.name, ref.version)
        if not mv.run_id:
            raise RegistryError(f"{ref.name} v{ref.version} names no run to download it from")
        folder = self.client.get_run(mv.run_id).info.artifact_uri
        target = Path(dst) / "model"
        with tempfile.TemporaryDirectory(prefix="mlops-unpack-") as tmp:
            resp = http_request(get_default_host_creds(folder), f"/{PACKED}", "GET", stream=True)
            if resp.status_code == 404:
                raise RegistryError(f"{ref.name} v{ref.version} has no {PACKED} in GitLab (its "
                                    "upload did not finish); train again to register a "
                                    "complete version")
            resp.raise_for_status()
            packed = Path(tmp) / PACKED
            with open(packed, "wb") as out:
                for chunk in resp.iter_content(1 << 20):
                    out.write(chunk)
            with tarfile.open(packed) as tar:
                tar.extractall(target, filter="data")
        return str(target)
