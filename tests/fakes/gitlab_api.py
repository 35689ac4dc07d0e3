"""A fake GitLab REST API on loopback: only the endpoints prefect-mlops uses, with the request
and response shapes of GitLab's API documentation (notes, uploads, deployments, pipeline
schedules, the token, the project and the current user, commit comments, protected environments
and deployment approvals; pipelines and jobs through `gitlab_runner.FakeCI`), token scopes and
owners (401/403 bodies as GitLab sends them) and injectable 429/5xx."""

from __future__ import annotations

import json
import re
import secrets
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, unquote, urlparse

from tests.fakes.gitlab_runner import FakeCI

USER = {"id": 7, "username": "project_42_bot", "name": "mlops bot", "state": "active"}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FakeGitLab:
    """State of one project; `tokens` maps a token to its scopes."""

    def __init__(self, project_id: str = "42", tokens: dict[str, list[str]] | None = None,
                 users: dict[str, dict] | None = None):
        self.project_id = project_id
        self.tokens = tokens if tokens is not None else {"glpat-good": ["api"]}
        self.users = users or {}  # token -> its owner (GET /user); other tokens: the bot USER
        self.commit_comments: dict[str, list[dict]] = {}
        self.notes: dict[str, list[dict]] = {}
        self.uploads: list[dict] = []
        self.deployments: list[dict] = []
        # doc/api/protected_environments.md and doc/api/deployments.md (approvals, Premium)
        self.protected_environments: dict[str, dict] = {}
        self.approvals: dict[int, list[dict]] = {}  # deployment id -> its approvals
        self.member_levels: dict[int, int] = {}  # user id -> project role (default Developer)
        self.groups: dict[int, set[int]] = {}  # group id -> member user ids
        self.pipeline_variables: dict[int, dict[str, str]] = {}  # pipelines made by the tests
        self.schedules: list[dict] = []
        self.wikis: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.failures: list[tuple[int, dict[str, str]]] = []  # (status, headers) served first
        self.ci: FakeCI | None = None
        # the token's role in the project and the project's "Minimum role to use pipeline variables"
        self.access_level = 30
        self.variables_role = "developer"
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    # -- test helpers -----------------------------------------------------------------------
    def fail_next(self, times: int, status: int = 429, retry_after: str | None = "1") -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self.failures.extend([(status, headers)] * times)

    def add_schedule(self, description: str, cron: str, timezone: str = "UTC",
                     variables: dict[str, str] | None = None, active: bool = True) -> dict:
        schedule = {"id": len(self.schedules) + 1, "description": description, "ref": "main",
                    "cron": cron, "cron_timezone": timezone, "next_run_at": now(),
                    "active": active, "created_at": now(), "updated_at": now(), "owner": USER,
                    "last_pipeline": None,
                    "variables": [{"key": k, "variable_type": "env_var", "value": v}
                                  for k, v in (variables or {}).items()]}
        self.schedules.append(schedule)
        return schedule

    def protect_environment(self, name: str, required_approval_count: int = 0,
                            approval_rules: list[dict] | None = None,
                            deploy_access_levels: list[dict] | None = None) -> dict:
        """A protected environment as `POST protected_environments` stores it."""
        rules = [{"id": i + 1, "user_id": r.get("user_id"), "group_id": r.get("group_id"),
                  "access_level": r.get("access_level"),
                  "access_level_description": r.get("access_level_description", ""),
                  "required_approvals": int(r.get("required_approvals", 1)),
                  "group_inheritance_type": r.get("group_inheritance_type", 0)}
                 for i, r in enumerate(approval_rules or [])]
        levels = [{"id": i + 1, "access_level": a.get("access_level"), "user_id": a.get("user_id"),
                   "group_id": a.get("group_id"), "group_inheritance_type": 0,
                   "access_level_description": a.get("access_level_description", "Maintainers")}
                  for i, a in enumerate(deploy_access_levels or [{"access_level": 40}])]
        environment = {"name": name, "deploy_access_levels": levels,
                       "required_approval_count": required_approval_count,
                       "approval_rules": rules}
        self.protected_environments[name] = environment
        return environment

    def add_blocked_deployment(self, environment: str, sha: str, ref: str, run_id: str,
                               triggered_by: dict | None = None,
                               job: str = "production-approval") -> dict:
        """What GitLab creates for a job with `environment: {name, action: start}` on a protected
        environment that requires approvals: a blocked deployment, its job waiting (manual), in a
        pipeline the gitlab-ci worker started for one flow run (its PREFECT__FLOW_RUN_ID)."""
        with self.lock:
            pipeline_id = 9100 + len(self.pipeline_variables)
            self.pipeline_variables[pipeline_id] = {"PREFECT__FLOW_RUN_ID": run_id}
            return self._deployment_of_job(
                environment, {"id": pipeline_id, "sha": sha, "ref": ref, "status": "manual"},
                {"name": job, "stage": "train", "status": "manual"}, triggered_by or USER)

    def _deployment_of_job(self, environment: str, pipeline: dict, job: dict, user: dict) -> dict:
        """A deployment for a job deploying to `environment` (action start): blocked while the
        protected environment requires approvals, else created."""
        number, required = len(self.deployments) + 1, self._required(
            {"environment": {"name": environment}})
        deployment = {
            "id": number, "iid": number, "ref": pipeline["ref"], "sha": pipeline["sha"],
            "created_at": now(), "updated_at": now(), "user": user,
            "status": "blocked" if required else "created",
            "environment": {"id": hash(environment) % 1000, "name": environment,
                            "external_url": None},
            "deployable": {"id": job.get("id", 5000 + number), "name": job["name"],
                           "stage": job["stage"], "status": job["status"],
                           "ref": pipeline["ref"], "tag": False, "user": user,
                           "pipeline": {k: pipeline[k] for k in ("id", "sha", "ref", "status")}},
            "pending_approval_count": required}
        self.deployments.append(deployment)
        self.approvals[number] = []
        return deployment

    def enable_ci(self, ci_yaml: Path, runner_env: dict[str, str], log_dir: Path) -> FakeCI:
        """Pipelines and jobs: `.gitlab-ci.yml` read from `ci_yaml`, its folder the checkout."""
        self.ci = FakeCI(ci_yaml, runner_env, log_dir, self.project_id)

        def deploy(pipeline: dict, job: dict) -> dict:  # the worker's token user started it
            with self.lock:
                return self._deployment_of_job(job["environment"], pipeline, job, USER)

        self.ci.on_environment = deploy
        return self.ci

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeGitLab:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body, headers: dict[str, str] | None = None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path, query = urlparse(self.path).path, dict(parse_qsl(urlparse(self.path).query))
                with fake.lock:
                    fake.requests.append((method, path))
                    if fake.failures:
                        status, headers = fake.failures.pop(0)
                        message = "Retry later" if status == 429 else "Internal Server Error"
                        return self._send(status, {"message": f"{status} {message}"}, headers)
                token = self.headers.get("PRIVATE-TOKEN")
                if token not in fake.tokens:
                    return self._send(401, {"message": "401 Unauthorized"})
                write = method != "GET"
                scopes = fake.tokens[token]
                if "api" not in scopes and (write or "read_api" not in scopes):
                    return self._send(403, {
                        "error": "insufficient_scope",
                        "error_description": "The request requires higher privileges than "
                                             "provided by the access token.",
                        "scope": "api"})
                body = self._body(raw)
                user = fake.users.get(token, USER)
                if path == "/api/v4/user" and method == "GET":  # doc/api/users.md
                    return self._send(200, {"state": "active", "bot": False, **user})
                if path == "/api/v4/personal_access_tokens/self":
                    return self._send(200, {"id": 3, "name": "mlops worker", "revoked": False,
                                            "active": True, "scopes": scopes, "user_id": user["id"],
                                            "expires_at": None, "created_at": now()})
                status, payload = fake.route(method, path, body, self.headers, query,
                                             base=f"http://{self.headers['Host']}", user=user)
                return self._send(status, payload)

            def _body(self, raw: bytes) -> dict:
                kind = self.headers.get("Content-Type", "")
                if kind.startswith("application/json") and raw:
                    return json.loads(raw)
                if kind.startswith("multipart/form-data"):
                    match = re.search(rb'filename="([^"]+)"', raw)
                    return {"filename": match.group(1).decode() if match else "file",
                            "bytes": len(raw)}
                return {k: v[0] for k, v in parse_qs(raw.decode()).items()}

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PUT(self):
                self._handle("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.ci:
            self.ci.stop()
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    # -- the API ----------------------------------------------------------------------------
    def route(self, method: str, path: str, body: dict, headers, query: dict | None = None,
              base: str = "", user: dict = USER) -> tuple[int, object]:
        prefix = f"/api/v4/projects/{self.project_id}"
        path = unquote(path)
        if not path.startswith(prefix):
            return 404, {"message": "404 Project Not Found"}
        rest = path[len(prefix):]
        if (m := re.fullmatch(r"/pipelines/(\d+)/variables", rest)) \
                and int(m.group(1)) in self.pipeline_variables:  # doc/api/pipelines.md
            return 200, [{"key": k, "value": v, "variable_type": "env_var"}
                         for k, v in self.pipeline_variables[int(m.group(1))].items()]
        if rest in ("", "/pipeline", "/pipelines") or rest.startswith(("/pipelines/", "/jobs/")):
            return self.route_ci(method, rest, body, query or {}, base)
        with self.lock:
            if m := re.fullmatch(r"/merge_requests/(\d+)/notes", rest):
                notes = self.notes.setdefault(m.group(1), [])
                if method == "GET":
                    return 200, notes
                if not body.get("body"):
                    return 400, {"message": "400 Bad request - body is missing"}
                note = {"id": 1000 + sum(len(n) for n in self.notes.values()),
                        "body": body["body"], "author": USER, "created_at": now(),
                        "updated_at": now(), "system": False, "noteable_id": int(m.group(1)),
                        "noteable_type": "MergeRequest", "noteable_iid": int(m.group(1)),
                        "resolvable": False, "confidential": False, "internal": False}
                notes.append(note)
                return 201, note
            if m := re.fullmatch(r"/merge_requests/(\d+)/notes/(\d+)", rest):
                for note in self.notes.get(m.group(1), []):
                    if note["id"] == int(m.group(2)):
                        if method == "PUT":
                            note.update(body=body.get("body", note["body"]), updated_at=now())
                        return 200, note
                return 404, {"message": "404 Not found"}
            if m := re.fullmatch(r"/repository/commits/([0-9a-f]{7,40})/comments", rest):
                # doc/api/commits.md: "Post comment to commit" / "Get the comments of a commit"
                comments = self.commit_comments.setdefault(m.group(1), [])
                if method == "GET":
                    return 200, comments
                if not body.get("note"):
                    return 400, {"message": "400 Bad request - note is missing"}
                comment = {"note": body["note"], "path": None, "line": None, "line_type": None,
                           "author": {k: user.get(k) for k in ("id", "username", "name", "state")},
                           "created_at": now()}
                comments.append(comment)
                return 201, comment
            if rest == "/uploads" and method == "POST":
                name, secret = body.get("filename", "file"), secrets.token_hex(16)
                upload = {"id": len(self.uploads) + 1, "alt": name,
                          "url": f"/uploads/{secret}/{name}",
                          "full_path": f"/-/project/{self.project_id}/uploads/{secret}/{name}",
                          "markdown": f"![{name.rsplit('.', 1)[0]}](/uploads/{secret}/{name})"}
                self.uploads.append(upload)
                return 201, upload
            if rest == "/protected_environments":
                if method == "GET":
                    return 200, list(self.protected_environments.values())
                if not body.get("name") or not body.get("deploy_access_levels"):
                    return 400, {"message": "name, deploy_access_levels are missing"}
                if body["name"] in self.protected_environments:
                    return 409, {"message": "Protected environment already exists"}
                return 201, self.protect_environment(
                    body["name"], int(body.get("required_approval_count") or 0),
                    body.get("approval_rules"), body["deploy_access_levels"])
            if m := re.fullmatch(r"/protected_environments/(.+)", rest):
                if m.group(1) not in self.protected_environments:
                    return 404, {"message": "404 Not found"}
                return 200, self.protected_environments[m.group(1)]
            if m := re.fullmatch(r"/deployments/(\d+)", rest):
                found = next((d for d in self.deployments if d["id"] == int(m.group(1))), None)
                if found is None:
                    return 404, {"message": "404 Not found"}
                return 200, self._with_approvals(found)
            if m := re.fullmatch(r"/deployments/(\d+)/approval", rest):
                if method != "POST":
                    return 405, {"message": "405 Method Not Allowed"}
                return self._approve(int(m.group(1)), body, user)
            if rest == "/deployments":
                if method == "GET":
                    query = query or {}
                    return 200, [d for d in self.deployments
                                 if query.get("environment") in (None, d["environment"]["name"])
                                 and query.get("status") in (None, d["status"])][
                        ::-1 if query.get("sort") == "desc" else 1]
                missing = [k for k in ("environment", "sha", "ref", "tag", "status")
                           if k not in body]
                if missing:
                    return 400, {"message": f"{missing[0]} is missing"}
                if body["status"] not in ("running", "success", "failed", "canceled"):
                    return 400, {"message": "status does not have a valid value"}
                deployment = {"id": len(self.deployments) + 1, "iid": len(self.deployments) + 1,
                              "ref": body["ref"], "sha": body["sha"], "created_at": now(),
                              "updated_at": now(), "status": body["status"], "user": USER,
                              "environment": {"id": hash(body["environment"]) % 1000,
                                              "name": body["environment"], "external_url": None},
                              "deployable": None}
                self.deployments.append(deployment)
                return 201, deployment
            if rest == "/wikis" and method == "POST":
                if not body.get("title") or "content" not in body:
                    return 400, {"message": "title is missing"}
                slug = re.sub(r"[^A-Za-z0-9/_-]+", "-", body["title"])
                if slug in self.wikis:
                    return 400, {"message": "Duplicate page: A page with that title already exists"}
                page = {"slug": slug, "title": body["title"], "content": body["content"],
                        "format": body.get("format", "markdown"), "encoding": "UTF-8"}
                self.wikis[slug] = page
                return 201, page
            if m := re.fullmatch(r"/wikis/(.+)", rest):
                page = self.wikis.get(m.group(1))
                if page is None:
                    return 404, {"message": "404 Wiki Page Not Found"}
                if method == "PUT":
                    page["content"] = body.get("content", page["content"])
                return 200, page
            if rest == "/pipeline_schedules" and method == "GET":
                return 200, [{k: v for k, v in s.items() if k not in ("variables", "last_pipeline")}
                             for s in self.schedules]
            if m := re.fullmatch(r"/pipeline_schedules/(\d+)", rest):
                for schedule in self.schedules:
                    if schedule["id"] == int(m.group(1)):
                        if method == "PUT":
                            for key in ("active", "cron", "cron_timezone", "description", "ref"):
                                if key in body:
                                    schedule[key] = body[key]
                            schedule["updated_at"] = now()
                        return 200, schedule
                return 404, {"message": "404 Not found"}
        return 404, {"message": "404 Not Found"}

    def _rules(self, deployment: dict) -> list[dict]:
        environment = self.protected_environments.get(deployment["environment"]["name"]) or {}
        return environment.get("approval_rules") or []

    def _required(self, deployment: dict) -> int:
        environment = self.protected_environments.get(deployment["environment"]["name"]) or {}
        return int(environment.get("required_approval_count") or 0) + sum(
            r["required_approvals"] for r in environment.get("approval_rules") or [])

    def _matches(self, rule: dict, user_id: int) -> bool:
        if rule.get("user_id") is not None:
            return rule["user_id"] == user_id
        if rule.get("group_id") is not None:
            return user_id in self.groups.get(rule["group_id"], set())
        return self.member_levels.get(user_id, 30) >= int(rule.get("access_level") or 99)

    def _with_approvals(self, deployment: dict) -> dict:
        """`GET deployments/:id` (Premium): approvals, pending count and the summary per rule."""
        approvals = self.approvals.get(deployment["id"], [])
        approved = sum(a["status"] == "approved" for a in approvals)
        rules = [{**rule, "deployment_approvals": [
            a for a in approvals if self._matches(rule, a["user"]["id"])]}
            for rule in self._rules(deployment)]
        return {**deployment, "approvals": approvals,
                "pending_approval_count": max(0, self._required(deployment) - approved),
                "approval_summary": {"rules": rules}}

    def _approve(self, deployment_id: int, body: dict, user: dict) -> tuple[int, object]:
        """`POST deployments/:id/approval` with GitLab's refusals (Deployments::ApprovalService)."""
        deployment = next((d for d in self.deployments if d["id"] == deployment_id), None)
        if deployment is None:
            return 404, {"message": "404 Not found"}
        if body.get("status") not in ("approved", "rejected"):
            return 400, {"message": "status does not have a valid value"}
        if deployment["status"] != "blocked" or self._required(deployment) < 1:
            return 400, {"message": "This deployment job is not waiting for approvals."}
        if deployment["user"]["id"] == user["id"]:
            return 400, {"message": "You cannot approve your own deployment. This configuration "
                                    "can be adjusted in the protected environment settings."}
        rules = self._rules(deployment)
        if rules and not any(self._matches(r, user["id"]) for r in rules):
            return 400, {"message": "You do not have permission to approve or reject this "
                                    "deployment."}
        approval = {"user": {k: user.get(k) for k in ("id", "username", "name", "state")},
                    "status": body["status"], "created_at": now(),
                    "comment": body.get("comment") or ""}
        given = self.approvals.setdefault(deployment_id, [])
        given[:] = [a for a in given if a["user"]["id"] != user["id"]] + [approval]
        if body["status"] == "rejected":  # the job is dropped (failure reason deployment_rejected)
            deployment["deployable"]["status"] = "failed"
        deployment["pending_approval_count"] = max(0, self._required(deployment) - sum(
            a["status"] == "approved" for a in given))  # none left: its job may be played
        deployment["updated_at"] = now()
        return 201, approval

    def route_ci(self, method: str, rest: str, body: dict, query: dict, base: str
                 ) -> tuple[int, object]:
        """The project, its pipelines and their jobs (GitLab's pipelines and jobs API)."""
        if rest == "":
            return 200, {"id": int(self.project_id), "path_with_namespace": "claims/models",
                         "default_branch": "main", "web_url": f"{base}/claims/models",
                         "ci_pipeline_variables_minimum_override_role": self.variables_role,
                         "permissions": {"project_access": {"access_level": self.access_level},
                                         "group_access": None}}
        if self.ci is None:
            return 404, {"message": "404 Not Found"}
        if rest == "/pipeline" and method == "POST":
            roles = {"developer": 30, "maintainer": 40, "owner": 50}
            if body.get("variables") and self.access_level < roles.get(self.variables_role, 99):
                return 400, {"message": {"base": [
                    "Insufficient permissions to set pipeline variables"]}}
            if not body.get("ref"):
                return 400, {"message": "400 Bad request - ref is missing"}
            return self.ci.create(base, body)
        if rest == "/pipelines" and method == "GET":
            return 200, self.ci.list(query)
        if (m := re.fullmatch(r"/jobs/(\d+)/play", rest)) and method == "POST":
            return self.ci.play(int(m.group(1)))
        m = re.fullmatch(r"/pipelines/(\d+)(/jobs|/cancel|/variables)?", rest)
        if not m or self.ci.get(int(m.group(1))) is None:
            return 404, {"message": "404 Not found"}
        pid, what = int(m.group(1)), m.group(2)
        if what == "/cancel" and method == "POST":
            return 200, self.ci.cancel(pid)
        if what == "/jobs":
            return 200, self.ci.jobs(pid)
        if what == "/variables":
            return 200, [{"key": k, "value": v, "variable_type": "env_var"}
                         for k, v in self.ci.variables(pid).items()]
        pipeline = self.ci.get(pid)
        if method == "GET":
            self.ci.reads.append((pid, pipeline["status"]))
        return 200, pipeline
