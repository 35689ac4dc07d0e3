"""GitLab's MLflow-compatible API, emulated as a loopback proxy in front of a real MLflow server.

Only the endpoints GitLab documents pass (https://docs.gitlab.com/user/project/ml/experiment_tracking/
mlflow_client/ and lib/api/ml/mlflow in gitlabhq); everything else is answered as GitLab's router
answers an unknown route (404 `{"error":"404 Not Found"}`). On the way through, GitLab's rules are
applied:

- a param or run tag can be written once per run (`log-parameter`/`set-tag` → 400 the second
  time; `log-batch` drops duplicates silently); param values are at most 250 characters;
- `runs/search` reads only the first experiment id, ignores `filter`, caps `max_results` at 1000
  and orders only by `created_at`, `name` or `metrics.<key>`;
- a run's `artifact_uri` is a generic-package URL (`…/packages/ml_models/candidate:<run>/files/`)
  that takes flat file names only (no folders);
- model versions are semantic versions taken from the `gitlab.version` tag (else the next patch
  after the highest); the API's `version` field is the version's database id, `aliases` is
  `[semver]`; `create` ignores `source` and `run_id` and makes a run of its own (experiment
  `[model]<name>`) whose files are the version's package; no alias writes, no version tags
  after creation, no version search;
- `mlflow-artifacts` serves only a model version's package: list `?path=<id>` and `<id>/<file>`.

Storage is the real server's: runs, params, metrics, registered models, versions and files all
end up in it (files through its `mlflow-artifacts` endpoint)."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlparse

import requests

MLFLOW = "/api/2.0/mlflow/"
ALLOWED = {
    ("GET", "experiments/get"), ("GET", "experiments/get-by-name"), ("GET", "experiments/list"),
    ("POST", "experiments/search"), ("POST", "experiments/create"),
    ("POST", "experiments/set-experiment-tag"), ("POST", "experiments/delete"),
    ("POST", "runs/create"), ("GET", "runs/get"), ("POST", "runs/search"),
    ("POST", "runs/update"), ("POST", "runs/log-metric"), ("POST", "runs/log-parameter"),
    ("POST", "runs/set-tag"), ("POST", "runs/log-batch"), ("POST", "runs/delete"),
    ("GET", "metrics/get-history"),
    ("POST", "registered-models/create"), ("GET", "registered-models/get"),
    ("PATCH", "registered-models/update"), ("POST", "registered-models/get-latest-versions"),
    ("DELETE", "registered-models/delete"), ("GET", "registered-models/search"),
    ("GET", "registered-models/alias"),
    ("POST", "model-versions/create"), ("GET", "model-versions/get"),
    ("GET", "model-versions/get-download-uri"), ("PATCH", "model-versions/update"),
}
NOT_FOUND = {"error": "404 Not Found"}
MAX_PARAM = 250
ID_TAG = "fake.gitlab.id"  # the GitLab id kept upstream, so a restarted proxy knows it again


def semver_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


class Reply(Exception):
    def __init__(self, status: int, body: dict):
        super().__init__(status)
        self.status, self.body = status, body


def mlflow_error(status: int, code: str, message: str = "") -> Reply:
    body = {"error_code": code}
    if message:
        body["message"] = message
    return Reply(status, body)


class GitLabMlflowProxy:
    """`url` is the tracking URI a GitLab user sets: `<host>/api/v4/projects/<id>/ml/mlflow`."""

    def __init__(self, upstream: str, project_id: str = "42", token: str = "glpat-mlflow"):
        self.upstream = upstream.rstrip("/")
        self.project_id = project_id
        self.token = token
        self.calls: list[tuple[str, str, int]] = []   # (method, path, status) in order
        self.refused: list[tuple[str, str]] = []      # unknown routes answered 404
        self.dropped: list[tuple[str, str]] = []      # (run, key) written twice in a log-batch
        self.versions: dict[str, dict] = {}           # GitLab model-version id → its record
        self.lock = threading.Lock()
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

    def package_url(self, package: str) -> str:
        return f"{self.base}{self.project}/packages/ml_models/{quote(package, safe=':')}/files/"

    # -- upstream -----------------------------------------------------------------------------
    def _up(self, method: str, endpoint: str, query: dict | None = None,
            body: dict | None = None) -> dict:
        resp = requests.request(method, f"{self.upstream}{MLFLOW}{endpoint}", params=query,
                                json=body, timeout=60)
        data = resp.json() if resp.content else {}
        if resp.status_code != 200:
            raise Reply(resp.status_code, data)
        return data

    def _run(self, run_id: str) -> dict:
        return self._up("GET", "runs/get", {"run_id": run_id})["run"]

    @staticmethod
    def _upstream_root(run: dict) -> str:
        root = run["info"]["artifact_uri"]
        if not root.startswith("mlflow-artifacts:/"):
            raise RuntimeError(f"upstream must serve artifacts (mlflow-artifacts:), got {root}")
        return root.split(":/", 1)[1].strip("/")

    def _upstream_files(self, run: dict) -> str:
        """The run's folder on the real server's artifact endpoint."""
        return f"{self.upstream}/api/2.0/mlflow-artifacts/artifacts/{self._upstream_root(run)}"

    def _package_of(self, run_id: str) -> str:
        for mv_id, record in self.versions.items():
            if record["run_id"] == run_id:
                return mv_id
        return f"candidate:{run_id}"

    def _gitlab_run(self, run: dict) -> dict:
        run["info"]["artifact_uri"] = self.package_url(self._package_of(run["info"]["run_id"]))
        return run

    # -- model versions -----------------------------------------------------------------------
    def _version_entity(self, mv_id: str) -> dict:
        record = self.versions[mv_id]
        upstream = self._up("GET", "model-versions/get", {
            "name": record["name"], "version": record["upstream_version"]})["model_version"]
        return {
            "name": record["name"], "version": mv_id,
            "creation_timestamp": upstream["creation_timestamp"] // 1000,
            "last_updated_timestamp": upstream.get("last_updated_timestamp", 0) // 1000,
            "user_id": None, "current_stage": "development",
            "description": upstream.get("description", ""),
            "source": f"{self.base}/group/project/-/ml/models/{record['name']}/versions/{mv_id}",
            "run_id": record["run_id"], "status": "READY", "status_message": "",
            "tags": [t for t in upstream.get("tags", []) if t["key"] != ID_TAG],
            "run_link": "", "aliases": [record["semver"]],
        }

    def _find_version(self, name: str, semver: str) -> str | None:
        return next((i for i, r in self.versions.items()
                     if r["name"] == name and r["semver"] == semver), None)

    def _create_version(self, body: dict) -> dict:
        name = body.get("name")
        if not name:
            raise mlflow_error(400, "INVALID_PARAMETER_VALUE", "name is missing")
        self._up("GET", "registered-models/get", {"name": name})  # 404 as GitLab when unknown
        tags = body.get("tags") or []
        semver = next((t["value"] for t in tags if t.get("key") == "gitlab.version"), None)
        mine = sorted((r["semver"] for r in self.versions.values() if r["name"] == name),
                      key=semver_key)
        if semver is None:
            major, minor, patch = semver_key(mine[-1]) if mine else (1, 0, -1)
            semver = f"{major}.{minor}.{patch + 1}"
        if not re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", semver):
            raise mlflow_error(400, "INVALID_PARAMETER_VALUE", "Version must be semantic version")
        if semver in mine:
            raise mlflow_error(400, "INVALID_PARAMETER_VALUE", "Version has already been taken")
        experiment = f"[model]{name}"
        try:
            exp_id = self._up("GET", "experiments/get-by-name",
                              {"experiment_name": experiment})["experiment"]["experiment_id"]
        except Reply:
            exp_id = self._up("POST", "experiments/create", body={"name": experiment})[
                "experiment_id"]
        run = self._up("POST", "runs/create", body={"experiment_id": exp_id,
                                                    "run_name": f"{name}-{semver}"})["run"]
        mv_id = str(1000 + len(self.versions) + 1)
        upstream = self._up("POST", "model-versions/create", body={
            "name": name, "source": run["info"]["artifact_uri"], "run_id": run["info"]["run_id"],
            "tags": [*tags, {"key": ID_TAG, "value": mv_id}],
            "description": body.get("description") or ""})["model_version"]
        self.versions[mv_id] = {"name": name, "semver": semver, "run_id": run["info"]["run_id"],
                                "upstream_version": upstream["version"]}
        return {"model_version": self._version_entity(mv_id)}

    def _load(self) -> None:
        """The versions an earlier proxy created on this upstream (GitLab persists them)."""
        found = self._up("GET", "model-versions/search", {"max_results": 10000})
        for mv in found.get("model_versions", []):
            tags = {t["key"]: t["value"] for t in mv.get("tags", [])}
            if ID_TAG in tags:
                self.versions[tags[ID_TAG]] = {
                    "name": mv["name"], "semver": tags.get("gitlab.version", ""),
                    "run_id": mv["run_id"], "upstream_version": mv["version"]}

    # -- routing ------------------------------------------------------------------------------
    def route(self, method: str, path: str, query: dict, raw: bytes) -> tuple[int, object]:
        body = json.loads(raw) if raw and method in ("POST", "PATCH", "DELETE") else {}
        mlflow_prefix = f"{self.project}/ml/mlflow/api/2.0/mlflow/"
        artifacts_prefix = f"{self.project}/ml/mlflow/api/2.0/mlflow-artifacts/artifacts"
        packages = re.fullmatch(rf"{self.project}/packages/ml_models/([^/]+)/files/([^/]+)", path)
        if path.startswith(mlflow_prefix):
            endpoint = path.removeprefix(mlflow_prefix)
            if (method, endpoint) in ALLOWED:
                return 200, self.mlflow(method, endpoint, query, body)
        elif path.startswith(artifacts_prefix) and method == "GET":
            return self.model_artifacts(path.removeprefix(artifacts_prefix).strip("/"), query)
        elif packages and method in ("PUT", "GET"):
            return self.package_file(method, packages.group(1), packages.group(2), raw)
        self.refused.append((method, path))
        return 404, NOT_FOUND

    def mlflow(self, method: str, endpoint: str, query: dict, body: dict) -> dict:
        if endpoint == "runs/create":
            return {"run": self._gitlab_run(self._up("POST", endpoint, body=body)["run"])}
        if endpoint in ("runs/get", "runs/update"):
            data = self._up(method, endpoint, query, body or None)
            run_id = (query or body).get("run_id")
            return {"run": self._gitlab_run(self._run(run_id))} if endpoint == "runs/get" else {
                "run_info": self._gitlab_run({"info": data["run_info"]})["info"]}
        if endpoint == "runs/search":
            return self._search_runs(body)
        if endpoint in ("runs/log-parameter", "runs/set-tag"):
            run = self._run(body["run_id"])
            kind = "params" if endpoint == "runs/log-parameter" else "tags"
            if any(p["key"] == body["key"] for p in run["data"].get(kind, [])):
                raise Reply(400, {"message": "400 Bad request"})
            if kind == "params" and len(str(body.get("value", ""))) > MAX_PARAM:
                raise mlflow_error(400, "INVALID_PARAMETER_VALUE",
                                   f"Value is too long (maximum is {MAX_PARAM} characters)")
            return self._up(method, endpoint, body=body)
        if endpoint == "runs/log-batch":
            run = self._run(body["run_id"])
            for kind in ("params", "tags"):
                seen = {p["key"] for p in run["data"].get(kind, [])}
                fresh = []
                for item in body.get(kind) or []:
                    if item["key"] not in seen:  # GitLab ignores duplicates
                        seen.add(item["key"])
                        fresh.append(item)
                    else:
                        self.dropped.append((body["run_id"], item["key"]))
                body[kind] = fresh
            too_long = [p["key"] for p in body["params"] if len(str(p["value"])) > MAX_PARAM]
            if too_long:  # validation errors block the whole batch
                raise mlflow_error(400, "INVALID_PARAMETER_VALUE",
                                   f"param {too_long[0]}: value is too long (maximum is "
                                   f"{MAX_PARAM} characters)")
            return self._up(method, endpoint, body=body)
        if endpoint == "registered-models/get-latest-versions":
            name = body.get("name")
            self._up("GET", "registered-models/get", {"name": name})
            mine = [(r["semver"], i) for i, r in self.versions.items() if r["name"] == name]
            if not mine:
                return {"model_versions": []}
            return {"model_versions": [self._version_entity(max(
                mine, key=lambda p: semver_key(p[0]))[1])]}
        if endpoint in ("registered-models/get", "registered-models/create",
                        "registered-models/update"):
            data = self._up(method, endpoint, query, body or None)
            data["registered_model"].pop("latest_versions", None)
            data["registered_model"].pop("aliases", None)
            return data
        if endpoint == "registered-models/alias":
            found = self._find_version(query.get("name", ""), query.get("alias", ""))
            if found is None:
                raise mlflow_error(404, "RESOURCE_DOES_NOT_EXIST")
            return {"model_version": self._version_entity(found)}
        if endpoint == "model-versions/create":
            with self.lock:
                return self._create_version(body)
        if endpoint == "model-versions/get":
            for param in ("name", "version"):
                if not query.get(param):
                    raise Reply(400, {"error": f"{param} is missing"})
            found = self._find_version(query["name"], query["version"])
            if found is None:
                raise mlflow_error(404, "RESOURCE_DOES_NOT_EXIST")
            return {"model_version": self._version_entity(found)}
        if endpoint == "model-versions/get-download-uri":
            if not str(query.get("version", "")).isdigit():
                raise Reply(400, {"error": "version is invalid"})
            return {"artifact_uri": f"mlflow-artifacts:/{query['version']}"}
        if endpoint == "model-versions/update":
            found = self._find_version(body.get("name", ""), body.get("version", ""))
            if found is None or "description" not in body:
                raise mlflow_error(400, "INVALID_PARAMETER_VALUE")
            record = self.versions[found]
            self._up("PATCH", endpoint, body={"name": record["name"],
                                             "version": record["upstream_version"],
                                             "description": body["description"]})
            return {"model_version": self._version_entity(found)}
        return self._up(method, endpoint, query or None, body or None)

    def _search_runs(self, body: dict) -> dict:
        ids = body.get("experiment_ids") or []
        if not ids:
            raise Reply(400, {"error": "experiment_ids is missing"})
        order = (body.get("order_by") or ["created_at DESC"])[0].split(" ")
        column, direction = order[0], (order[1] if len(order) > 1 else "ASC").upper()
        mapped = {"created_at": "attributes.start_time", "name": "attributes.run_name"}.get(
            column, column if column.startswith("metrics.") else "attributes.start_time")
        if mapped == "attributes.start_time" and column != "created_at":
            direction = "DESC"  # GitLab's default order when the column is not supported
        query = {"experiment_ids": ids[:1], "max_results": min(int(body.get("max_results", 200)),
                                                                1000),
                 "order_by": [f"{mapped} {direction}"]}
        if body.get("page_token"):
            query["page_token"] = body["page_token"]
        data = self._up("POST", "runs/search", body=query)
        data["runs"] = [self._gitlab_run(r) for r in data.get("runs", [])]
        return data

    def model_artifacts(self, rest: str, query: dict) -> tuple[int, object]:
        """GitLab serves only model-version packages here: list `?path=<id>`, get `<id>/<f>`."""
        if not rest:
            path = query.get("path", "")
            mv_id, _, sub = path.partition("/")
            if mv_id not in self.versions:
                return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST"}
            if sub:  # GitLab's answer to MLflow asking whether a path is a folder
                return 200, {"files": []}
            run = self._run(self.versions[mv_id]["run_id"])
            listing = requests.get(f"{self.upstream}/api/2.0/mlflow-artifacts/artifacts",
                                   params={"path": self._upstream_root(run)}, timeout=60)
            files = [f for f in listing.json().get("files", []) if not f.get("is_dir")]
            return 200, {"files": [{"path": f["path"], "is_dir": False,
                                    "file_size": int(f.get("file_size", 0))} for f in files]}
        mv_id, _, name = rest.partition("/")
        if mv_id not in self.versions or not name or "/" in name:
            return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST"}
        return self.package_file("GET", mv_id, name, b"")

    def package_file(self, method: str, package: str, name: str, raw: bytes
                     ) -> tuple[int, object]:
        run_id = (self.versions[package]["run_id"] if package in self.versions
                  else package.removeprefix("candidate:"))
        try:
            run = self._run(run_id)
        except Reply:
            return 404, {"message": "404 Package Not Found"}
        target = f"{self._upstream_files(run)}/{quote(name)}"
        if method == "PUT":
            resp = requests.put(target, data=raw, timeout=120)
            resp.raise_for_status()
            return 201, {"message": "201 Created"}
        resp = requests.get(target, timeout=120)
        if resp.status_code != 200:
            return 404, {"message": "404 Not Found"}
        return 200, resp.content

    # -- server -------------------------------------------------------------------------------
    def start(self) -> GitLabMlflowProxy:
        proxy = self
        self._load()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _handle(self, method: str):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parsed = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
                auth = self.headers.get("Authorization", "")
                if auth != f"Bearer {proxy.token}":
                    status, body = 401, {"message": "401 Unauthorized"}
                else:
                    try:
                        status, body = proxy.route(method, parsed.path, query, raw)
                    except Reply as reply:
                        status, body = reply.status, reply.body
                proxy.calls.append((method, parsed.path, status))
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
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
