"""The routes of GitLab's MLflow API (lib/api/ml/mlflow/*.rb), its mlflow-artifacts routes
(lib/api/ml/mlflow_artifacts/artifacts.rb) and the ml_models package files
(lib/api/ml_model_packages.rb), each written from that file. `fake` is a GitLabMlflow
(tests/fakes/gitlab_mlflow.py): its entities and finders; `p` the request's params."""

from __future__ import annotations

import base64

from tests.fakes.gitlab_ml import FILE_NAME, Invalid, ServiceError


class Reply(Exception):  # noqa: N818 - an HTTP answer, raised from inside a handler
    def __init__(self, status: int, body: object):
        super().__init__(status)
        self.status, self.body = status, body


# api_helpers.rb: MLflow-style errors are `render_structured_api_error!(hash, status)`
def not_found() -> Reply:  # resource_not_found!: no "message" key
    return Reply(404, {"error_code": "RESOURCE_DOES_NOT_EXIST"})


def already_exists() -> Reply:  # resource_already_exists!: no "message" key
    return Reply(400, {"error_code": "RESOURCE_ALREADY_EXISTS"})


def invalid(message: object = None) -> Reply:  # invalid_parameter!: nil, a text or a list
    return Reply(400, {"error_code": "INVALID_PARAMETER_VALUE", "message": message})


def grape(param: str, problem: str = "is missing") -> Reply:  # Grape `requires` / `type:`
    return Reply(400, {"error": f"{param} {problem}"})


def need(p: dict, name: str, kind: type = str) -> object:
    if p.get(name) in (None, ""):
        raise grape(name)
    if kind is not str:
        try:
            return kind(p[name])
        except (TypeError, ValueError):
            raise grape(name, "is invalid") from None
    if not isinstance(p[name], str):
        raise grape(name, "is invalid")
    return p[name]


def pairs(values: dict[str, str]) -> list[dict]:
    """key_value.rb: metadata and params as `[{key, value}]`."""
    return [{"key": k, "value": v} for k, v in values.items()]


def page(items: list, p: dict, default: int = 200) -> tuple[list, str | None]:
    """`keyset_paginate(cursor: page_token, per_page: [max_results, 1000].min)`: an opaque
    cursor, nil (JSON null) after the last page."""
    size = min(int(p.get("max_results") or default), 1000)
    start = int(base64.b64decode(p["page_token"]).decode()) if p.get("page_token") else 0
    more = start + size < len(items)
    token = base64.b64encode(str(start + size).encode()).decode() if more else None
    return items[start:start + size], token


# -- experiments.rb ---------------------------------------------------------------------------
def experiment_get(fake, p):  # by iid (`experiment_id`, default '')
    return {"experiment": fake.experiment(fake.find_experiment(
        {"experiment_id": p.get("experiment_id") or ""}))}


def experiment_by_name(fake, p):  # exact name (`experiment_name`, default '')
    return {"experiment": fake.experiment(fake.find_experiment(
        {"experiment_name": p.get("experiment_name") or ""}))}


def experiment_list(fake, p):
    return {"experiments": [fake.experiment(e) for e in fake.ml.experiments]}


def experiment_search(fake, p):  # `filter` ignored; keyset pages
    found, token = page(fake.ml.experiments, p)
    return {"experiments": [fake.experiment(e) for e in found], "next_page_token": token}


def experiment_create(fake, p):
    """A taken name → RecordInvalid → resource_already_exists!; `experiment_id` is the iid as a
    string (new_experiment.rb); tags are stored (insert_all), artifact_location ignored."""
    name = need(p, "name")
    try:
        created = fake.ml.create_experiment(name)
    except Invalid:
        raise already_exists() from None
    created.metadata.update({t["key"]: t["value"] for t in p.get("tags") or []})
    return {"experiment_id": str(created.iid)}


def experiment_set_tag(fake, p):  # `metadata.create!`: a second value → RecordInvalid → 400
    experiment = fake.find_experiment(p)
    key, value = need(p, "key"), need(p, "value")
    if key in experiment.metadata:
        raise Invalid(f"Name '{key}' already taken")
    experiment.metadata[key] = value
    return {}


def experiment_delete(fake, p):  # experiment.rb `stop_destroy` for a model's experiment
    experiment = fake.find_experiment(p)
    if experiment.model is not None:
        raise Reply(400, {"message": "Cannot delete an experiment associated to a model"})
    fake.ml.experiments.remove(experiment)
    return {}


# -- runs.rb (candidate_repository.rb) ----------------------------------------------------------
def run_create(fake, p):
    """`experiment_id` Integer, required (by iid); name = run_name, else tag mlflow.runName, else
    random; tags by insert_all, then gitlab.CI_JOB_ID is looked up: an unknown build raises
    after the run exists (500)."""
    experiment = fake.find_experiment({"experiment_id": need(p, "experiment_id", int)})
    tags = {t["key"]: t["value"] for t in p.get("tags") or []}
    run = fake.ml.create_candidate(experiment, p.get("run_name") or tags.get("mlflow.runName"),
                                   int(p.get("start_time") or 0))
    fake.ml.insert_all(run, "tags", p.get("tags") or [])
    fake.ml.handle_gitlab_metadata(run, tags)
    return {"run": fake.run(run)}


def run_get(fake, p):  # `run_id` is the eid; `run_uuid` ignored
    return {"run": fake.run(fake.find_candidate(p))}


def run_search(fake, p):
    """`experiment_ids` required, only the first is read; `filter` and `run_view_type` are
    ignored; order_by (a String) by created_at/name/id or `metrics.<key>` (runs without that
    metric are left out), default `created_at DESC`."""
    if "experiment_ids" not in p:
        raise grape("experiment_ids")
    if not isinstance(p.get("order_by", ""), str):
        raise grape("order_by", "is invalid")
    ids = p["experiment_ids"] if isinstance(p["experiment_ids"], list) else [p["experiment_ids"]]
    experiment = fake.find_experiment({"experiment_id": ids[0] if ids else None})
    runs = [c for c in fake.ml.candidates if c.experiment is experiment]
    column, _, direction = (p.get("order_by") or "created_at DESC").partition(" ")
    descending = direction.strip().upper() != "ASC"
    if column.startswith("metrics."):
        latest = {c.id: [m["value"] for m in c.metrics if m["key"] == column[8:]] for c in runs}
        runs = sorted((c for c in runs if latest[c.id]), key=lambda c: (latest[c.id][-1], c.id),
                      reverse=descending)
    else:
        key = {"name": lambda c: (c.name or "", c.id), "id": lambda c: c.id}.get(
            column, lambda c: (c.created_at, c.id))
        runs = sorted(runs, key=key, reverse=descending)
    found, token = page(runs, p)
    return {"runs": [fake.run(c) for c in found], "next_page_token": token}


def run_update(fake, p):  # status among CANDIDATE_STATES; `run_name` ignored
    run = fake.find_candidate(p)
    if p.get("status") and p["status"] not in ("RUNNING", "SCHEDULED", "FINISHED", "FAILED",
                                               "KILLED"):
        raise grape("status", "does not have a valid value")
    run.status = (p.get("status") or run.status).lower()
    run.end_time = int(p["end_time"]) if p.get("end_time") is not None else run.end_time
    return {"run_info": fake.run_info(run)}


def run_log_metric(fake, p):
    run = fake.find_candidate(p)
    fake.ml.insert_all(run, "metrics", [{"key": need(p, "key"), "value": need(p, "value", float),
                                         "timestamp": need(p, "timestamp", int),
                                         "step": p.get("step")}])
    return {}


def run_log_param(fake, p):  # `params.create!`: once per key, ≤250 (RecordInvalid → 400)
    fake.ml.add_param(fake.find_candidate(p), need(p, "key"), need(p, "value"))
    return {}


def run_set_tag(fake, p):  # gitlab.* tags handled, then `metadata.create!` (once per key)
    run = fake.find_candidate(p)
    key, value = need(p, "key"), need(p, "value")
    fake.ml.handle_gitlab_metadata(run, {key: value})
    fake.ml.add_tag(run, key, value)
    return {}


def run_log_batch(fake, p):
    """metrics, then params, then tags, each one `insert_all` with no transaction: duplicates
    are skipped, a param over the database's 250 fails after the metrics are stored."""
    run = fake.find_candidate(p)
    fake.ml.insert_all(run, "metrics", p.get("metrics") or [])
    for kind in ("params", "tags"):
        fake.dropped += [(run.eid, k) for k in fake.ml.insert_all(run, kind, p.get(kind) or [])]
    return {}


def run_delete(fake, p):  # candidate.rb `check_model_version`
    run = fake.find_candidate(p)
    if run.model_version is not None:
        raise Reply(400, {"message": "Cannot delete a candidate associated to a model version"})
    fake.ml.candidates.remove(run)
    return {}


def metric_history(fake, p):  # metrics.rb (newest GitLab only)
    run = fake.find_candidate(p)
    key = need(p, "metric_key")
    return {"metrics": [m for m in fake.run(run)["data"]["metrics"] if m["key"] == key]}


# -- registered_models.rb -------------------------------------------------------------------
def model_create(fake, p):
    """CreateModelService; any failure (taken name, `[model]<name>` experiment already there,
    invalid name, blank tag) → resource_already_exists!. Tags become model metadata."""
    name = need(p, "name")
    tags = {t.get("key"): t.get("value") for t in p.get("tags") or []}
    if any(not k or not v for k, v in tags.items()):
        raise already_exists()
    try:
        fake.ml.create_model(name, p.get("description") or "", tags)
    except (ServiceError, Invalid):
        raise already_exists() from None
    return {"registered_model": fake.registered_model(name)}


def model_get(fake, p):  # `name` default '' → find_model → 404
    return {"registered_model": fake.registered_model(fake.find_model(p).name)}


def model_update(fake, p):  # UpdateModelService: the description only
    model = fake.find_model(p)
    model.description, model.updated_at = p.get("description") or "", model.updated_at + 1
    return {"registered_model": fake.registered_model(model.name)}


def model_latest(fake, p):
    """`present [model.latest_version]`: a model with no version gives `[nil]`, which Grape
    renders as `{"model_versions":[null]}`; `stages` is ignored."""
    latest = fake.ml.latest_version(fake.find_model(p))
    return {"model_versions": [fake.model_version(latest) if latest else None]}


def model_delete(fake, p):
    model = fake.find_model(p)
    experiment = fake.ml.default_experiment(model)
    fake.ml.candidates = [c for c in fake.ml.candidates if c.experiment is not experiment]
    fake.ml.versions = [v for v in fake.ml.versions if v.model is not model]
    fake.ml.experiments.remove(experiment)
    fake.ml.models.remove(model)
    return {}


def model_search(fake, p):
    """api_helpers.rb `model_filter_params`: `filter.split('=')`; anything but `name` → 400
    "Invalid attribute key"; the value, outer quotes stripped, is a substring (LIKE %v%)."""
    models = sorted(fake.ml.models, key=lambda m: m.name)
    if p.get("filter") is not None:
        key, _, rest = str(p["filter"]).partition("=")
        if key != "name":
            raise invalid("Invalid attribute key specified. Valid keys are '{'name'}'")
        value = rest.split("=")[0]
        value = value[1:] if value[:1] in "'\"" and value else value
        value = value[:-1] if value[-1:] in ("'", '"') and value else value
        models = [m for m in models if value in m.name]
    order = (p.get("order_by") or "name ASC").lower().split(" ")
    if order[0] in ("last_updated_timestamp", "updated_at"):
        models.sort(key=lambda m: m.updated_at)
    if len(order) > 1 and order[1] == "desc":
        models.reverse()
    found, token = page(models, p)
    return {"registered_models": [fake.registered_model(m.name) for m in found],
            "next_page_token": token}


def model_alias(fake, p):  # the alias IS the semantic version; no alias writes exist
    mv = fake.ml.version(p.get("name"), p.get("alias"))
    if mv is None:
        raise not_found()
    return {"model_version": fake.model_version(mv)}


# -- model_versions.rb ----------------------------------------------------------------------
def version_create(fake, p):
    """`version` = the tag `gitlab.version` (api_helpers.rb `custom_version`), else the service
    increments; `run_id` reaches the service only on the newer API (`candidate_eid`); a service
    error is `invalid_parameter!(result.message)`, a JSON list."""
    model = fake.find_model(p)
    while fake.before_version:
        fake.before_version.pop(0)()
    tags = p.get("tags") or []
    version = next((t.get("value") for t in tags if t.get("key") == "gitlab.version"), None)
    eid = p.get("run_id") if fake.mode == "newer" else None
    try:
        mv = fake.ml.create_model_version(model, version, p.get("description") or "", tags, eid)
    except ServiceError as exc:
        raise invalid(exc.messages) from None
    return {"model_version": fake.model_version(mv)}


def version_get(fake, p):  # `version` is the semantic version; the database id is not found
    mv = fake.ml.version(need(p, "name"), need(p, "version"))
    if mv is None:
        raise not_found()
    return {"model_version": fake.model_version(mv)}


def version_download_uri(fake, p):  # no lookup at all; `version` must be an Integer
    need(p, "name")
    return {"artifact_uri": f"mlflow-artifacts:/{need(p, 'version', int)}"}


def version_update(fake, p):  # missing param → message nil; unknown version → UPDATE_FAILED
    if not (p.get("name") and p.get("version") and p.get("description")):
        raise invalid()
    mv = fake.ml.version(p["name"], p["version"])
    if mv is None:
        raise Reply(400, {"error_code": "UPDATE_FAILED"})
    mv.description = p["description"]
    return {"model_version": fake.model_version(mv)}


MLFLOW_ROUTES = {  # (method, endpoint) → (handler, only on the newer GitLab)
    ("GET", "experiments/get"): (experiment_get, False),
    ("GET", "experiments/get-by-name"): (experiment_by_name, False),
    ("GET", "experiments/list"): (experiment_list, False),
    ("POST", "experiments/search"): (experiment_search, False),
    ("POST", "experiments/create"): (experiment_create, False),
    ("POST", "experiments/set-experiment-tag"): (experiment_set_tag, False),
    ("POST", "experiments/delete"): (experiment_delete, False),
    ("POST", "runs/create"): (run_create, False),
    ("GET", "runs/get"): (run_get, False),
    ("POST", "runs/search"): (run_search, False),
    ("POST", "runs/update"): (run_update, False),
    ("POST", "runs/log-metric"): (run_log_metric, False),
    ("POST", "runs/log-parameter"): (run_log_param, False),
    ("POST", "runs/set-tag"): (run_set_tag, False),
    ("POST", "runs/log-batch"): (run_log_batch, False),
    ("POST", "runs/delete"): (run_delete, False),
    ("GET", "metrics/get-history"): (metric_history, True),
    ("POST", "registered-models/create"): (model_create, False),
    ("GET", "registered-models/get"): (model_get, False),
    ("PATCH", "registered-models/update"): (model_update, False),
    ("POST", "registered-models/get-latest-versions"): (model_latest, False),
    ("DELETE", "registered-models/delete"): (model_delete, False),
    ("GET", "registered-models/search"): (model_search, False),
    ("GET", "registered-models/alias"): (model_alias, False),
    ("POST", "model-versions/create"): (version_create, False),
    ("GET", "model-versions/get"): (version_get, False),
    ("GET", "model-versions/get-download-uri"): (version_download_uri, False),
    ("PATCH", "model-versions/update"): (version_update, False),
}


# -- mlflow_artifacts/artifacts.rb ----------------------------------------------------------
def artifacts(fake, rest: str, p: dict) -> tuple[int, object]:
    """List `?path=<id>` (a path with a second part answers `{"files":[]}`, MLflow's "is it a
    folder?" probe) or get `<id>/<file>`: a version's package, or on the newer API a run's
    `candidate:<iid>` package. A missing `path` is `nil.split` (500); an unknown version on a
    file GET is `nil.package` (500)."""
    if not rest.strip("/"):
        if p.get("path") is None:
            return 500, {"message": "500 Internal Server Error"}
        target, _, sub = str(p["path"]).partition("/")
        if sub:
            return 200, {"files": []}
        package = _artifact_package(fake, target)
        if package is None:
            raise not_found()
        return 200, {"files": [{"path": name, "file_size": len(data), "is_dir": False}
                               for name, data in package.files.items()]}
    target, _, name = rest.strip("/").partition("/")
    package = _artifact_package(fake, target)
    if package is None and not target.startswith("candidate:"):
        return 500, {"message": "500 Internal Server Error"}
    if package is None or name not in package.files:
        raise not_found()
    return 200, package.files[name]


def _artifact_package(fake, target: str):
    if target.startswith("candidate:") and fake.mode == "newer":
        run = fake.ml.candidate(iid=target.removeprefix("candidate:"))
        return run.package if run else None
    mv = fake.ml.version_by_id(target)
    return mv.package if mv else None


# -- ml_model_packages.rb@2d0fdb4 -----------------------------------------------------------
def package_file(fake, method: str, target: str, folder: str, name: str,
                 raw: bytes) -> tuple[int, object]:
    """`:model_version_id/files/(*path/):file_name`: a version's package by database id, or
    `candidate:<iid>`, whose package PackageForCandidateService finds or makes (also on GET).
    Object storage failing on upload → `forbidden!` (403). Upload answers 201."""
    if not FILE_NAME.fullmatch(name):
        raise grape("file_name", "is invalid")
    if target.startswith("candidate:"):
        run = fake.ml.candidate(iid=target.removeprefix("candidate:"))
        if run is None:
            raise Reply(404, {"message": "404 Not Found"})
        package = fake.ml.package_for_candidate(run)
    else:
        mv = fake.ml.version_by_id(target)
        if mv is None:
            raise Reply(404, {"message": "404 Not Found"})
        package = mv.package
    stored = f"{folder}/{name}" if folder else name
    if method == "PUT":
        if fake.failing_uploads:
            fake.failing_uploads -= 1
            raise Reply(403, {"message": "403 Forbidden"})
        package.files[stored] = raw
        return 201, {"message": "201 Created"}
    if stored not in package.files:  # PackageFileFinder#execute! → RecordNotFound
        raise Reply(404, {"message": "404 Not found"})
    return 200, package.files[stored]

