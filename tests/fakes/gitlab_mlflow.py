"""GitLab's MLflow-compatible API and its `ml_models` package files, emulated on loopback from
gitlabhq's source (not from this project's adapter).

`url` is what a GitLab user sets as MLFLOW_TRACKING_URI: `<host>/api/v4/projects/<id>/ml/mlflow`.
Each route below names the gitlabhq file it follows; the data model and the services' rules are
in tests/fakes/gitlab_ml.py. Two behaviours, chosen by `mode`:

- "older" (GitLab 17.x before MR !182777, "Promote model version through MLflow API"):
  `model-versions/create` has no `run_id` param (model_versions.rb@f7f952a), so every version
  gets a new run of its own in `[model]<name>`; `registered-models/get` lists the versions as raw
  database rows (entities/ml/mlflow/registered_model.rb@bc7f4d7, `expose :versions` without
  `using:`); `mlflow-artifacts` serves model versions only (mlflow_artifacts/artifacts.rb@415360b);
  package files have no sub-folders (ml_model_packages.rb before `(*path/)`); no
  `metrics/get-history`.
- "newer" (after !182777, 18.x): `run_id` is the "Run ID of the candidate to be promoted to a model
  version" (model_versions.rb@1737a58), checked by create_model_version_service.rb; model versions
  are entities in `registered-models/get` (registered_model.rb@3919ad7); `candidate:<iid>` in
  `mlflow-artifacts` (artifacts.rb@1737a58); sub-folders (ml_model_packages.rb@2d0fdb4);
  `metrics/get-history` (metrics.rb@3f82e48).

Anything else is answered as GitLab's API catch-all answers (lib/api/api.rb `route :any, '*path'`):
404 `{"error":"404 Not Found"}`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

from tests.fakes.gitlab_ml import (
    ArgumentError,
    Candidate,
    CheckViolation,
    Experiment,
    GitLabMl,
    Invalid,
    ModelVersion,
)
from tests.fakes.gitlab_mlflow_routes import (
    MLFLOW_ROUTES,
    Reply,
    artifacts,
    need,
    not_found,
    package_file,
    pairs,
)

MODES = ("older", "newer")
NOT_FOUND = {"error": "404 Not Found"}  # lib/api/api.rb catch-all `route :any, '*path'`


class GitLabMlflow:
    """One GitLab project's MLflow API in memory; `ml` holds what GitLab would have stored."""

    def __init__(self, mode: str = "newer", project_id: str = "42",
                 token: str = "glpat-mlflow") -> None:
        assert mode in MODES, mode
        self.mode, self.project_id, self.token = mode, project_id, token
        self.ml = GitLabMl()
        self.calls: list[tuple[str, str, int]] = []  # (method, path, status), in order
        self.refused: list[tuple[str, str]] = []     # unknown routes answered 404
        self.dropped: list[tuple[str, str]] = []     # (run, key) skipped by log-batch
        self.failing_uploads = 0  # the next N package PUTs fail as object storage failing
        self.before_version: list[Callable[[], None]] = []  # run before the next create
        self.lock = threading.Lock()  # one request at a time: each is one transaction
        self.server: ThreadingHTTPServer | None = None

    # -- addresses ----------------------------------------------------------------------------
    @property
    def base(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def project(self) -> str:
        return f"/api/v4/projects/{self.project_id}"

    @property
    def url(self) -> str:
        return f"{self.base}{self.project}/ml/mlflow"

    # -- entities (lib/api/entities/ml/mlflow/*.rb) -----------------------------------------
    def artifact_uri(self, c: Candidate) -> str:
        """run_info.rb@de09f03: the version's package once the run is a version's, else the
        run's own `candidate:<iid>` package."""
        target = c.model_version.id if c.model_version else f"candidate:{c.iid}"
        return f"{self.base}{self.project}/packages/ml_models/{target}/files/"

    def run_info(self, c: Candidate) -> dict:
        """run_info.rb: run_id = eid, experiment_id = the experiment's iid as a string; nil
        end_time and name are left out (`expose_nil: false`)."""
        info = {"run_id": c.eid, "run_uuid": c.eid, "experiment_id": str(c.experiment.iid),
                "start_time": c.start_time or 0, "end_time": c.end_time, "run_name": c.name,
                "status": c.status.upper(), "artifact_uri": self.artifact_uri(c),
                "lifecycle_stage": "active", "user_id": "1"}
        return {k: v for k, v in info.items() if v is not None}

    def run(self, c: Candidate) -> dict:
        """run.rb: data = metrics (metric.rb: name as key, tracked_at as timestamp, step left
        out when nil), params and metadata as tags (key_value.rb)."""
        metrics = [{k: v for k, v in m.items() if v is not None} for m in c.metrics]
        return {"info": self.run_info(c), "data": {
            "metrics": metrics, "params": pairs(c.params), "tags": pairs(c.metadata)}}

    def model_version(self, mv: ModelVersion) -> dict:
        """model_version.rb@1e62780: `version` is the database id, `aliases` the semantic
        version, timestamps in seconds, `source` the version's page in GitLab's UI."""
        candidate = self.ml.version_candidate(mv)
        return {"name": mv.model.name, "version": str(mv.id),
                "creation_timestamp": int(mv.created_at),
                "last_updated_timestamp": int(mv.updated_at), "user_id": None,
                "current_stage": "development", "description": mv.description,
                "source": f"{self.base}/group/project/-/ml/models/{mv.model.id}/versions/{mv.id}",
                "run_id": candidate.eid if candidate else None, "status": "READY",
                "status_message": "", "tags": pairs(mv.metadata), "run_link": "",
                "aliases": [mv.version]}

    def registered_model(self, name: str) -> dict:
        """registered_model.rb: `latest_versions` is every version, as entities (3919ad7) or,
        on the older code (bc7f4d7, no `using:`), as the raw database rows."""
        model = self.ml.model(name)
        versions = self.ml.versions_of(model)
        listed = ([self.model_version(v) for v in versions] if self.mode == "newer" else [
            {"id": v.id, "project_id": int(self.project_id), "model_id": model.id,
             "version": v.version, "package_id": v.package.id if v.package else None,
             "description": v.description, "semver_major": v.semver[0],
             "semver_minor": v.semver[1], "semver_patch": v.semver[2]} for v in versions])
        return {"name": model.name, "creation_timestamp": int(model.created_at),
                "last_updated_timestamp": int(model.updated_at),
                "description": model.description, "user_id": "1",
                "tags": pairs(model.metadata), "latest_versions": listed}

    @staticmethod
    def experiment(e: Experiment) -> dict:
        """experiment.rb entity: experiment_id is the iid as a string."""
        return {"experiment_id": str(e.iid), "name": e.name, "lifecycle_stage": "active",
                "artifact_location": "not_implemented", "tags": pairs(e.metadata)}

    # -- finders (api_helpers.rb) -------------------------------------------------------------
    def find_experiment(self, p: dict):
        found = self.ml.experiment(p.get("experiment_id"), p.get("experiment_name"))
        if found is None:
            raise not_found()
        return found

    def find_candidate(self, p: dict) -> Candidate:
        found = self.ml.candidate(eid=need(p, "run_id"))
        if found is None:
            raise not_found()
        return found

    def find_model(self, p: dict):
        found = self.ml.model(p.get("name") or "")
        if found is None:
            raise not_found()
        return found

    # -- routing ------------------------------------------------------------------------------
    def route(self, method: str, path: str, p: dict, raw: bytes) -> tuple[int, object]:
        api = f"{self.project}/ml/mlflow/api/2.0/mlflow/"
        if path.startswith(api) and (method, path.removeprefix(api)) in MLFLOW_ROUTES:
            handler, newer_only = MLFLOW_ROUTES[(method, path.removeprefix(api))]
            if not newer_only or self.mode == "newer":
                return 200, handler(self, p)
        if path.startswith(f"{self.project}/ml/mlflow/api/2.0/mlflow-artifacts/artifacts") \
                and method == "GET":
            return artifacts(self, path.split("/mlflow-artifacts/artifacts", 1)[1], p)
        prefix = f"{self.project}/packages/ml_models/"
        if path.startswith(prefix) and method in ("PUT", "GET") and "/files/" in path:
            target, rest = path.removeprefix(prefix).split("/files/", 1)
            folder, _, name = unquote(rest).rpartition("/")
            if not folder or self.mode == "newer":  # `(*path/)` is the newer route
                return package_file(self, method, unquote(target), folder, name, raw)
        self.refused.append((method, path))
        return 404, NOT_FOUND

    def handle(self, method: str, path: str, p: dict, raw: bytes) -> tuple[int, object]:
        """Grape's rescue_from: ActiveRecordError → 400 INVALID_PARAMETER_VALUE with the message
        (entrypoint.rb); anything else (ArgumentError) → 500."""
        with self.lock:
            try:
                return self.route(method, path, p, raw)
            except Reply as reply:
                return reply.status, reply.body
            except (Invalid, CheckViolation) as exc:
                return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": str(exc)}
            except ArgumentError:
                return 500, {"message": "500 Internal Server Error"}

    # -- what GitLab holds, for assertions ------------------------------------------------------
    def version_files(self, name: str, semver: str) -> set[str]:
        mv = self.ml.version(name, semver)
        return set(mv.package.files) if mv and mv.package else set()

    def runs_of(self, experiment: str) -> list[Candidate]:
        found = self.ml.experiment(name=experiment)
        return [c for c in self.ml.candidates if c.experiment is found] if found else []

    # -- server -------------------------------------------------------------------------------
    def start(self) -> GitLabMlflow:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _handle(self, method: str):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parsed = urlparse(self.path)
                params = {k: v[0] for k, v in parse_qs(parsed.query).items()}
                if raw and method != "PUT":
                    params.update(json.loads(raw))  # Grape merges query and JSON body params
                # entrypoint.rb `authenticate!`; packages accept the token as Bearer only
                if self.headers.get("Authorization", "") != f"Bearer {fake.token}":
                    status, body = 401, {"message": "401 Unauthorized"}
                else:
                    status, body = fake.handle(method, parsed.path, params, raw)
                fake.calls.append((method, parsed.path, status))
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream"
                                 if isinstance(body, bytes) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                self._handle("GET")

            def do_POST(self):  # noqa: N802
                self._handle("POST")

            def do_PUT(self):  # noqa: N802
                self._handle("PUT")

            def do_PATCH(self):  # noqa: N802
                self._handle("PATCH")

            def do_DELETE(self):  # noqa: N802
                self._handle("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def serve(mode: str, monkeypatch) -> Iterator[GitLabMlflow]:
    """A started fake for one test: the client's token and tracking URI set, MLflow's retries
    off (GitLab's 500s would otherwise be retried for minutes), MLflow's global URIs restored."""
    import mlflow.tracking._model_registry.utils as registry_uris
    import mlflow.tracking._tracking_service.utils as tracking_uris

    fake = GitLabMlflow(mode).start()
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", fake.token)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fake.url)  # restored after the test
    monkeypatch.setattr(tracking_uris, "_tracking_uri", tracking_uris._tracking_uri)
    monkeypatch.setattr(registry_uris, "_registry_uri", registry_uris._registry_uri)
    try:
        yield fake
    finally:
        fake.stop()
