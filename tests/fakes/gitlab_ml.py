"""GitLab's ML data model in memory, as gitlabhq's models and services define it.

Each rule names the gitlabhq file it comes from (app/models/ml/*, app/services/ml/*,
app/services/packages/ml_model/*, lib/gitlab/regex.rb). The HTTP side (routes, entities, status
codes) is tests/fakes/gitlab_mlflow.py. Nothing here is derived from this project's adapter.
"""

from __future__ import annotations

import itertools
import random
import re
import time
import uuid
from dataclasses import dataclass, field

# lib/gitlab/regex.rb `semver_regex`: semver.org's regex, anchored (no leading zeros, optional
# -prerelease and +build, no "v" prefix); Packages::SemVer.match / ModelVersion `format:` use it
SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?")
# lib/gitlab/regex.rb `ml_model_file_name_regex` (the package route's `file_name`)
FILE_NAME = re.compile(r"[A-Za-z0-9._\-+ ]+")
# lib/gitlab/regex.rb `ml_model_name_regex` = `package_name_regex`
MODEL_NAME = re.compile(r"@?(?:[\w\-.+]*/)*[\w\-.]+@?(?:[\w\-.+]*/)*[\w\-.]*")
MODEL_EXPERIMENT = "[model]"  # app/models/ml/model.rb EXPERIMENT_NAME_PREFIX
ANIMALS = ("heron", "otter", "lynx", "ibis", "marten", "gecko")  # create_candidate_service.rb
ADJECTIVES = ("brisk", "calm", "eager", "keen", "quiet", "sly")


class Invalid(Exception):  # noqa: N818 - it is ActiveRecord::RecordInvalid
    """ActiveRecord::RecordInvalid; str() is Rails' "Validation failed: <messages>"."""

    def __init__(self, *messages: str):
        super().__init__("Validation failed: " + ", ".join(messages))
        self.messages = list(messages)


class CheckViolation(Exception):  # noqa: N818 - it is ActiveRecord::StatementInvalid
    """A database constraint hit by `insert_all` (no model validation runs there)."""


class ServiceError(Exception):  # noqa: N818 - a ServiceResponse.error
    """A service's `ServiceResponse.error(message: [...])`: the API passes the list through."""

    def __init__(self, messages: list[str]):
        super().__init__(messages)
        self.messages = messages


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(eq=False)
class Package:
    """Packages::MlModel::Package; files by name, the newest upload of a name wins
    (Packages::PackageFileFinder takes the most recent file)."""

    id: int
    name: str
    version: str
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass(eq=False)
class Model:
    id: int
    name: str
    description: str
    metadata: dict[str, str] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)


@dataclass(eq=False)
class Experiment:
    id: int
    iid: int
    name: str
    model: Model | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def package_name(self) -> str:
        """experiment.rb: a model's experiment packages under the model's name."""
        return self.model.name if self.model else f"ml_experiment_{self.iid}"


@dataclass(eq=False)
class ModelVersion:
    id: int
    model: Model
    version: str
    description: str
    package: Package | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    @property
    def semver(self) -> tuple[int, int, int]:
        """semantic_versionable.rb: semver_major/minor/patch, what `latest_by_model` orders by."""
        match = SEMVER.fullmatch(self.version)
        return (int(match[1]), int(match[2]), int(match[3])) if match else (0, 0, 0)


@dataclass(eq=False)
class Candidate:
    """Ml::Candidate (an MLflow run): `eid` is the run id, `iid` is per project."""

    id: int
    iid: int
    experiment: Experiment
    name: str | None
    start_time: int
    eid: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: str = "running"
    end_time: int | None = None
    params: dict[str, str] = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    model_version: ModelVersion | None = None
    package: Package | None = None
    ci_build: str | None = None
    created_at: float = field(default_factory=time.time)

    @property
    def package_version(self) -> str:
        return f"candidate_{self.iid}"  # candidate.rb PACKAGE_PREFIX


class GitLabMl:
    """One project's experiments, candidates, models, versions and ml_model packages."""

    def __init__(self) -> None:
        self.experiments: list[Experiment] = []
        self.candidates: list[Candidate] = []
        self.models: list[Model] = []
        self.versions: list[ModelVersion] = []
        self.packages: list[Package] = []
        self.jobs: set[str] = set()  # the instance's CI builds (Ci::Build ids)
        self._ids = itertools.count(1)
        self._experiment_iids = itertools.count(1)
        self._candidate_iids = itertools.count(1)

    # -- experiments (experiment.rb, experiment_repository.rb) ---------------------------------
    def experiment(self, iid: object = None, name: object = None) -> Experiment | None:
        """ExperimentRepository#by_iid_or_name: by iid when given, else by exact name."""
        if iid not in (None, ""):
            return next((e for e in self.experiments if str(e.iid) == str(iid)), None)
        return next((e for e in self.experiments if e.name == name), None)

    def create_experiment(self, name: str, model: Model | None = None) -> Experiment:
        """experiment.rb: name present and "should be unique in the project"."""
        if not name:
            raise Invalid("Name can't be blank")
        if self.experiment(name=name):
            raise Invalid("Name should be unique in the project")
        found = Experiment(next(self._ids), next(self._experiment_iids), name, model)
        self.experiments.append(found)
        return found

    # -- candidates (create_candidate_service.rb, candidate_repository.rb) -------------------
    def create_candidate(self, experiment: Experiment, name: str | None = None,
                         start_time: int = 0) -> Candidate:
        """CreateCandidateService: the given name, else a random "adjective-animal-NNNN"."""
        name = name or (f"{random.choice(ADJECTIVES)}-{random.choice(ANIMALS)}-"
                        f"{random.randint(0, 9999):04d}")
        found = Candidate(next(self._ids), next(self._candidate_iids), experiment, name,
                          start_time or 0)
        self.candidates.append(found)
        return found

    def candidate(self, eid: object = None, iid: object = None) -> Candidate | None:
        if iid is not None:
            return next((c for c in self.candidates if str(c.iid) == str(iid)), None)
        return next((c for c in self.candidates if c.eid == eid), None)

    @staticmethod
    def add_param(candidate: Candidate, key: str, value: str) -> None:
        """candidate_param.rb via `params.create!`: name unique per run, both present, ≤250."""
        errors = []
        if not key:
            errors.append("Name can't be blank")
        elif len(key) > 250:
            errors.append("Name is too long (maximum is 250 characters)")
        if key in candidate.params:
            errors.append("Name has already been taken")
        if value in (None, ""):
            errors.append("Value can't be blank")
        elif len(value) > 250:
            errors.append("Value is too long (maximum is 250 characters)")
        if errors:
            raise Invalid(*errors)
        candidate.params[key] = value

    @staticmethod
    def add_tag(candidate: Candidate, key: str, value: str) -> None:
        """candidate_metadata.rb via `metadata.create!`: "'k' already taken", value ≤5000."""
        errors = []
        if not key:
            errors.append("Name can't be blank")
        elif len(key) > 250:
            errors.append("Name is too long (maximum is 250 characters)")
        if key in candidate.metadata:
            errors.append(f"Name '{key}' already taken")
        if value in (None, ""):
            errors.append("Value can't be blank")
        elif len(value) > 5000:
            errors.append("Value is too long (maximum is 5000 characters)")
        if errors:
            raise Invalid(*errors)
        candidate.metadata[key] = value

    @staticmethod
    def insert_all(candidate: Candidate, kind: str, items: list[dict]) -> list[str]:
        """candidate_repository.rb `insert_many`: `insert_all` skips rows whose name exists (ON
        CONFLICT DO NOTHING) and runs no validation; only the database's `limit: 250` on param
        name and value stops a row (the whole statement). Returns the keys skipped."""
        if kind == "metrics":
            candidate.metrics.extend({"key": m["key"], "value": float(m["value"]),
                                      "timestamp": int(m.get("timestamp") or 0),
                                      "step": m.get("step")} for m in items)
            return []
        target = candidate.params if kind == "params" else candidate.metadata
        if kind == "params" and any(len(i["key"]) > 250 or len(str(i.get("value", ""))) > 250
                                    for i in items):
            raise CheckViolation('PG::CheckViolation: ERROR:  new row for relation '
                                 '"ml_candidate_params" violates check constraint')
        skipped = []
        for item in items:
            if item["key"] in target:
                skipped.append(item["key"])
            else:
                target[item["key"]] = str(item.get("value", ""))
        return skipped

    def handle_gitlab_metadata(self, candidate: Candidate, tags: dict[str, str]) -> None:
        """handle_candidate_gitlab_metadata_service.rb: `gitlab.CI_JOB_ID` must be a build of the
        instance (`Ci::Build.find_by_id`), else ArgumentError (not rescued: HTTP 500)."""
        job = tags.get("gitlab.CI_JOB_ID")
        if job is None:
            return
        if job not in self.jobs:
            raise ArgumentError("gitlab.CI_JOB_ID must refer to an existing build")
        candidate.ci_build = job

    # -- packages (find_or_create_package_service.rb, package_for_candidate_service.rb) ------
    def find_or_create_package(self, name: str, version: str) -> Package:
        found = next((p for p in self.packages if (p.name, p.version) == (name, version)), None)
        if found is None:
            found = Package(next(self._ids), name, version)
            self.packages.append(found)
        return found

    def package_for_candidate(self, candidate: Candidate) -> Package:
        """PackageForCandidateService: the package (experiment package name, candidate_<iid>),
        made on demand; the candidate is re-pointed at it if it pointed elsewhere."""
        package = self.find_or_create_package(candidate.experiment.package_name,
                                              candidate.package_version)
        candidate.package = package
        return package

    # -- models (model.rb, create_model_service.rb) --------------------------------------------
    def model(self, name: object) -> Model | None:
        return next((m for m in self.models if m.name == name), None)

    def create_model(self, name: str, description: str, metadata: dict[str, str]) -> Model:
        """CreateModelService: experiment `[model]<name>` first (an existing one fails), then the
        model (name format, unique, ≤255). A failing model after a created experiment returns
        the error from inside the transaction block with `next`, so the experiment stays."""
        if self.experiment(name=MODEL_EXPERIMENT + name):
            raise ServiceError(["Name should be unique in the project"])
        experiment = self.create_experiment(MODEL_EXPERIMENT + name)
        if not name or not MODEL_NAME.fullmatch(name) or len(name) > 255 or self.model(name):
            raise ServiceError(["Name is invalid"])
        model = Model(next(self._ids), name, description or "", dict(metadata))
        experiment.model = model
        self.models.append(model)
        return model

    def default_experiment(self, model: Model) -> Experiment:
        return next(e for e in self.experiments if e.model is model)

    def versions_of(self, model: Model) -> list[ModelVersion]:
        return [v for v in self.versions if v.model is model]

    def latest_version(self, model: Model) -> ModelVersion | None:
        """model.rb `has_one :latest_version, -> { latest_by_model }`: highest major, minor,
        patch (prerelease not ordered); nil when the model has no version."""
        return max(self.versions_of(model), key=lambda v: v.semver, default=None)

    def version(self, name: object, semver: object) -> ModelVersion | None:
        """ModelVersion.by_project_id_name_and_version: by the semantic version string."""
        return next((v for v in self.versions if v.model.name == name and v.version == semver),
                    None)

    def version_by_id(self, mv_id: object) -> ModelVersion | None:
        return next((v for v in self.versions if str(v.id) == str(mv_id)), None)

    def version_candidate(self, mv: ModelVersion) -> Candidate | None:
        return next((c for c in self.candidates if c.model_version is mv), None)

    # -- create_model_version_service.rb -------------------------------------------------------
    def create_model_version(self, model: Model, version: str | None, description: str,
                             metadata: list[dict], candidate_eid: str | None) -> ModelVersion:
        """One transaction: nothing is kept when it fails (`error` raises inside it, the
        RecordInvalid rescue sits outside it). `candidate_eid` is None on GitLab versions whose
        API does not pass `run_id` on."""
        latest = self.latest_version(model)
        version = version or increment_version(latest.version if latest else None)
        if not SEMVER.fullmatch(version):
            raise ServiceError(["Version must be semantic version"])
        errors = []  # model_version.rb validations: `errors.full_messages`
        if any(v.version == version for v in self.versions_of(model)):
            errors.append("Version has already been taken")
        if len(version) > 255:
            errors.append("Version is too long (maximum is 255 characters)")
        if len(description or "") > 10_000:
            errors.append("Description is too long (maximum is 10000 characters)")
        if errors:
            raise ServiceError(errors)
        promoted = None
        if candidate_eid:  # find_or_create_candidate, the run given by the client
            promoted = self.candidate(eid=candidate_eid)
            if promoted is None:
                raise ServiceError(["Run not found"])
            if promoted.model_version is not None:
                raise ServiceError(["Run has already a model version"])
            if promoted.experiment.model is not model:
                raise ServiceError(["Run's experiment does not belong to this model"])
        for entry in metadata:  # model_version_metadata.rb, after the run checks
            key, value = entry.get("key") or "", entry.get("value") or ""
            problems = [m for m, bad in (("Name can't be blank", not key),
                                         ("Name is too long (maximum is 255 characters)",
                                          len(key) > 255),
                                         ("Value can't be blank", not value),
                                         ("Value is too long (maximum is 5000 characters)",
                                          len(value) > 5000)) if bad]
            if problems:
                raise ServiceError([str(Invalid(*problems))])
        mv = ModelVersion(next(self._ids), model, version, description or "")
        self.versions.append(mv)
        if promoted is not None:
            promoted.model_version = mv
            package = promoted.package
            if package is not None:  # the run's files become the version's files
                package.name, package.version = model.name, version
        else:  # a new run of its own in `[model]<name>`, random name
            self.create_candidate(self.default_experiment(model)).model_version = mv
            package = None
        mv.package = package or self.find_or_create_package(model.name, version)
        mv.metadata = {e["key"]: e["value"] for e in metadata}
        return mv


class ArgumentError(Exception):
    """Ruby's ArgumentError: not an ActiveRecordError, so no API rescue turns it into a 400."""


def increment_version(version: str | None) -> str:
    """increment_version_service.rb: "1.0.0" for none, else patch + 1 (Packages::SemVer keeps the
    prerelease and build parts in `to_s`)."""
    if version is None:
        return "1.0.0"
    match = SEMVER.fullmatch(version)
    assert match, version
    text = f"{match[1]}.{match[2]}.{int(match[3]) + 1}"
    return text + (f"-{match[4]}" if match[4] else "") + (f"+{match[5]}" if match[5] else "")
