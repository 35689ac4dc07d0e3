"""Read-only access to an MLflow tracking server over its REST API (2.0), without importing
MLflow: what the read-only commands (`mlops history`, `audit verify`, `status`) and the
up-to-date check of `mlops train` use when a tracking server serves the store, GitLab's MLflow
API included (`GitLabRestRegistry` applies its rules). Importing MLflow and its client costs
more CPU than those commands may spend in all; writes, downloads and non-HTTP stores keep
`Registry` (MlflowClient).

`RestRegistry` answers the reads `Registry` answers, and its `client` the few MlflowClient
calls the audit store makes (`get_experiment_by_name`, `search_runs`), with objects carrying
the same attributes, so the records and their verification are the same code either way."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from tasks.adapters.model_version import ModelVersionRef, run_page
from tasks.core.errors import RegistryError, TrackingUnavailable, UnknownVersion
from tasks.core.redact import redact

API = "/api/2.0/mlflow/"
VIEW_TYPES = {1: "ACTIVE_ONLY", 2: "DELETED_ONLY", 3: "ALL"}  # mlflow.entities.ViewType
MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
DENIED = ("HTTP_401", "HTTP_403", "UNAUTHENTICATED", "PERMISSION_DENIED")  # who, not what


class RestError(RegistryError):
    """An MLflow server's error answer, with its error code (as MlflowException has)."""

    def __init__(self, message: str, error_code: str):
        super().__init__(message)
        self.error_code = error_code


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    name: str
    lifecycle_stage: str
    creation_time: int | None


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    experiment_id: str
    status: str
    start_time: int | None
    end_time: int | None
    lifecycle_stage: str
    artifact_uri: str


@dataclass(frozen=True)
class RunData:
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    info: RunInfo
    data: RunData


class Page(list):
    """One page of results and the token of the next (MLflow's PagedList)."""

    def __init__(self, items: list, token: str | None):
        super().__init__(items)
        self.token = token


def _run(raw: dict[str, Any]) -> Run:
    info, data = raw.get("info", {}), raw.get("data", {})
    return Run(
        RunInfo(run_id=info.get("run_id", ""), experiment_id=info.get("experiment_id", ""),
                status=info.get("status", ""), start_time=_int(info.get("start_time")),
                end_time=_int(info.get("end_time")),
                lifecycle_stage=info.get("lifecycle_stage", "active"),
                artifact_uri=info.get("artifact_uri", "")),
        RunData(params={p["key"]: p.get("value", "") for p in data.get("params", [])},
                metrics={m["key"]: float(m["value"]) for m in data.get("metrics", [])},
                tags={t["key"]: t.get("value", "") for t in data.get("tags", [])}))


def _int(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None


@dataclass(frozen=True)
class ModelVersion:
    """The attributes of MLflow's ModelVersion that `Registry._ref` (and GitLab's) read."""

    name: str
    version: str
    run_id: str | None
    source: str
    tags: dict[str, str]
    aliases: list[str]


def _model_version(raw: dict[str, Any]) -> ModelVersion:
    return ModelVersion(name=raw["name"], version=str(raw["version"]),
                        run_id=raw.get("run_id") or None, source=raw.get("source") or "",
                        tags={t["key"]: t.get("value", "") for t in raw.get("tags") or []},
                        aliases=list(raw.get("aliases") or []))


class RestClient:
    """The MlflowClient calls the read path needs, as plain HTTP requests."""

    def __init__(self, uri: str, token: str = "", timeout_s: float = 30):
        parts = urllib.parse.urlsplit(uri.rstrip("/"))
        self.base = urllib.parse.urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1],
                                             parts.path, "", "")) + API
        self.headers = {"Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        elif parts.username is not None:  # user:password in the URI, as MLflow's client sends
            pair = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            self.headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        self.uri = uri
        self.timeout_s = timeout_s

    def call(self, endpoint: str, query: dict[str, Any] | None = None,
             body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One GET (query) or POST (body) request; an error answer raises RestError."""
        url = self.base + endpoint
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        headers = self.headers if data is None else {**self.headers,
                                                     "Content-Type": "application/json"}
        request = urllib.request.Request(url, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                answer = json.loads(exc.read() or b"{}")
            except ValueError:
                answer = {}
            code = answer.get("error_code") or f"HTTP_{exc.code}"
            raise RestError(redact(f"MLflow {endpoint}: {code}: {answer.get('message', '')}"),
                            code) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise TrackingUnavailable(
                f"MLflow tracking server {redact(self.uri)} did not answer {endpoint} "
                f"({getattr(exc, 'reason', exc)})") from None

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        try:
            raw = self.call("experiments/get-by-name", {"experiment_name": name})["experiment"]
        except RestError as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return Experiment(experiment_id=raw["experiment_id"], name=raw["name"],
                          lifecycle_stage=raw.get("lifecycle_stage", "active"),
                          creation_time=_int(raw.get("creation_time")))

    def search_runs(self, experiment_ids: list[str], max_results: int = 1000,
                    page_token: str | None = None, run_view_type: int = 1) -> Page:
        body: dict[str, Any] = {"experiment_ids": experiment_ids, "max_results": max_results,
                                "run_view_type": VIEW_TYPES[int(run_view_type)]}
        if page_token:
            body["page_token"] = page_token
        found = self.call("runs/search", body=body)
        return Page([_run(r) for r in found.get("runs", [])],
                    found.get("next_page_token") or None)

    def get_run(self, run_id: str) -> Run:
        return _run(self.call("runs/get", {"run_id": run_id})["run"])


class RestRegistry:
    """The reads of `Registry`, over MLflow's REST API: same answers, no MLflow import."""

    max_param_chars = 6000  # as Registry: the audit store refuses, never clips, longer values
    serves_artifact_files = True

    def __init__(self, uri: str, token: str = "", ui_url: str | None = None,
                 endpoint: str | None = None):
        self.uri = uri  # the store (it names the audit anchors)
        self.ui_url = ui_url
        self.endpoint = endpoint  # a server in front of a store that is not its URL, or None
        self.client = RestClient(endpoint or uri, token)  # the server that serves it

    def training_experiment(self, model: str) -> str:
        return model

    def all_runs(self, experiment: str) -> list[Run]:
        """Every run of an experiment, oldest first (as Registry.all_runs)."""
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            return []
        runs: list[Run] = []
        token = None
        while True:
            page = self.client.search_runs([found.experiment_id], page_token=token)
            runs.extend(page)
            token = page.token
            if not token or not page:
                break
        return sorted(runs, key=lambda run: run.info.start_time or 0)

    def run_params(self, run_id: str) -> dict[str, str]:
        return dict(self.client.get_run(run_id).data.params)

    def run_metrics(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)

    def run_url(self, run_id: str) -> str:
        return run_page(redact(self.uri), self.ui_url, run_id,
                        lambda: self.client.get_run(run_id).info.experiment_id)

    def alias_version(self, name: str, alias: str) -> str | None:
        try:
            found = self.client.call("registered-models/alias", {"name": name, "alias": alias})
        except RestError as exc:
            if exc.error_code in MISSING:
                return None
            raise
        return str(found["model_version"]["version"])

    def _ref(self, mv: ModelVersion) -> ModelVersionRef:
        return ModelVersionRef(name=mv.name, version=mv.version, run_id=mv.run_id,
                               source=mv.source, tags=dict(mv.tags))

    def get_version(self, name: str, version: str) -> ModelVersionRef | None:
        try:
            found = self.client.call("model-versions/get", {"name": name, "version": version})
        except RestError:
            return None
        return self._ref(_model_version(found["model_version"]))

    def require_version(self, name: str, version: str) -> ModelVersionRef:
        found = self.get_version(name, version)
        if found is None:
            raise UnknownVersion(f"{name} has no version {version} in the registry")
        return found

    def versions(self, name: str) -> list[ModelVersionRef]:
        """Every version of a model, lowest first ([] when the model is not registered)."""
        return self._search(f"name = '{name}'")

    def find_version(self, name: str, run_key: str) -> ModelVersionRef | None:
        """The version an earlier run with the same run key registered, if any (lowest first):
        the up-to-date check of `mlops train`, as Registry.find_version asks it."""
        try:
            found = self._search(f"name = '{name}' and tags.run_key = '{run_key}'")
        except RestError as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return found[0] if found else None

    def _search(self, filter_string: str) -> list[ModelVersionRef]:
        """Every model version the filter matches, every page, lowest version first."""
        found: list[ModelVersionRef] = []
        token = None
        while True:
            query = {"filter": filter_string, "max_results": 1000,
                     **({"page_token": token} if token else {})}
            page = self.client.call("model-versions/search", query)
            found += [self._ref(_model_version(mv)) for mv in page.get("model_versions", [])]
            token = page.get("next_page_token")
            if not token:
                break
        return sorted(found, key=lambda ref: int(ref.version))
