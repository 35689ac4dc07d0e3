"""GitLab CI behind the fake GitLab API: a pipeline created through the API gets the jobs that
`.gitlab-ci.yml`'s rules select for its variables (read from the file, API-pipeline semantics:
`changes:` counts as true, the project's CI/CD variables included), and a simulated runner runs
the scripts of the jobs that execute flow runs (`flow-run`, `deploy-run`, `production-approval`) as
local processes with the variables a GitLab job would have. A manual job waits until it is played
(`POST jobs/:id/play`); a job deploying to an environment (action start) gets a deployment from
`on_environment`, and one that GitLab blocks for approvals cannot be played until it is approved.
Response shapes follow GitLab's pipelines and jobs API documentation. Any other job a flow-run
pipeline selects fails (this runner cannot run it), so a rule that lets lint/test/build-image into
such a pipeline turns it red."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import yaml

KEYWORDS = {"stages", "variables", "workflow", "default", "include", "image", "services",
            "before_script", "after_script", "cache"}
FINAL = {"success", "failed", "canceled", "skipped"}
RUNNABLE = {"flow-run", "deploy-run", "production-approval"}  # the jobs that run `prefect`/`mlops`
VAR = re.compile(r"\$\{?(\w+)\}?")


def _tree(pid: int) -> list[int]:
    """pid and every process below it (a flow run's engine starts in a session of its own)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(
                int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    out, todo = [], [pid]
    while todo:
        out.append(todo.pop())
        todo.extend(parents.get(out[-1], []))
    return out


def _signal(pid: int, sig: int) -> None:
    """What stopping a job's container does: every process of the job gets the signal."""
    for member in _tree(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, sig)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def expand(text: str, variables: dict[str, str]) -> str:
    return VAR.sub(lambda m: variables.get(m.group(1), ""), str(text))


def _operand(raw: str, variables: dict[str, str]) -> str | re.Pattern | None:
    raw = raw.strip()
    if raw == "null":
        return None
    if m := re.fullmatch(r"/(.*)/(\w*)", raw):
        return re.compile(m.group(1), re.IGNORECASE if "i" in m.group(2) else 0)
    if raw[:1] in "\"'":
        return raw[1:-1]
    if raw.startswith("$"):
        return variables.get(raw.lstrip("$").strip("{}"))
    raise ValueError(f"rule operand {raw!r} not understood by the fake")


def rule_matches(expression: str, variables: dict[str, str]) -> bool:
    """GitLab's `rules: if:` for what this project's file uses: $VAR, ==, !=, =~, !~, && and ||."""
    def atom(text: str) -> bool:
        m = re.fullmatch(r"\s*(\$\{?\w+\}?)\s*(==|!=|=~|!~)\s*(.+?)\s*", text)
        if not m:
            name = text.strip().lstrip("$").strip("{}")
            return bool(variables.get(name))
        lhs, op, rhs = _operand(m.group(1), variables), m.group(2), _operand(m.group(3), variables)
        if op in ("=~", "!~"):
            found = isinstance(rhs, re.Pattern) and lhs is not None and bool(rhs.search(lhs))
            return found if op == "=~" else not found
        return (lhs == rhs) if op == "==" else (lhs != rhs)

    return any(all(atom(a) for a in part.split("&&")) for part in expression.split("||"))


class FakeCI:
    """Pipelines of one project; knobs: `pending_s` (wait for a runner), `runner_tags` (tags
    that have a runner; None: any), `fail_before_script` (a failure_reason such as
    runner_system_failure), `lose_create_responses` (create, then answer 502). Jobs run at once,
    each on a runner of its own (no `concurrent` cap): a parent job waiting for jobs it started
    never blocks them."""

    def __init__(self, ci_yaml: Path, runner_env: dict[str, str], log_dir: Path,
                 project_id: str = "42"):
        self.ci_yaml = Path(ci_yaml)
        self.log_dir = Path(log_dir)
        self.checkout = self.ci_yaml.parent
        self.runner_env = dict(runner_env)
        self.project_id = project_id
        self.pipelines: dict[int, dict] = {}
        self.pending_s = 0.0
        self.runner_tags: set[str] | None = None
        self.fail_before_script: str | None = None
        self.lose_create_responses = 0
        self.project_variables: dict[str, str] = {}  # Settings > CI/CD > Variables: rules see them
        # job with `environment:` (action start) -> the deployment GitLab creates for it, or None
        self.on_environment: Callable[[dict, dict], dict | None] | None = None
        self.logs: dict[int, Path] = {}
        self.reads: list[tuple[int, str]] = []  # (pipeline, status) of every GET of a pipeline
        self.lock = threading.RLock()
        self._next = 100

    # -- API ------------------------------------------------------------------------------
    def create(self, base: str, body: dict) -> tuple[int, object]:
        config = yaml.safe_load(self.ci_yaml.read_text())
        pipeline_vars = {v["key"]: v["value"] for v in body.get("variables") or []}
        ref = body.get("ref") or "main"
        predefined = {"CI_PIPELINE_SOURCE": "api", "CI_COMMIT_REF_NAME": ref,
                      "CI_COMMIT_BRANCH": ref, "CI_DEFAULT_BRANCH": "main",
                      "CI_COMMIT_MESSAGE": "Update the models", "CI_PROJECT_ID": self.project_id,
                      "CI_SERVER_URL": base, "CI_PROJECT_DIR": str(self.checkout)}
        variables = {**predefined, **{k: str(v) for k, v in (config.get("variables") or {}).items()},
                     **self.project_variables, **pipeline_vars}
        when = {name: self._when(job, variables) for name, job in config.items()
                if name not in KEYWORDS and not name.startswith(".") and isinstance(job, dict)}
        selected = [name for name, rule in when.items() if rule is not None]
        if not selected:
            return 400, {"message": {"base": [
                "Pipeline will not run for the selected trigger. The rules configuration "
                "prevented any jobs from being added to the pipeline."]}}
        with self.lock:
            pid = self._next
            self._next += 1
            web = f"{base}/claims/models/-/pipelines/{pid}"
            jobs = []
            for i, name in enumerate(selected):
                spec = config[name]
                job_id = pid * 10 + i
                jobs.append({"id": job_id, "name": name, "stage": spec.get("stage", "test"),
                             "status": "created", "failure_reason": None,
                             "tag_list": [expand(t, variables) for t in spec.get("tags") or []],
                             "web_url": f"{base}/claims/models/-/jobs/{job_id}",
                             "created_at": now(), "started_at": None, "finished_at": None,
                             "allow_failure": False, "_spec": spec, "_when": when[name]})
            pipeline = {"id": pid, "iid": pid - 99, "project_id": int(self.project_id),
                        "status": "created", "source": "api", "ref": ref, "sha": "c0ffee" * 6,
                        "name": expand((config.get("workflow") or {}).get("name", ""), variables)
                        or None, "web_url": web, "created_at": now(), "updated_at": now(),
                        "_variables": variables, "_pipeline_variables": pipeline_vars,
                        "_jobs": jobs, "_cancel": False}
            self.pipelines[pid] = pipeline
        for job in jobs:
            environment = job["_spec"].get("environment")
            if environment and self.on_environment is not None \
                    and environment.get("action", "start") == "start":
                job["_deployment"] = self.on_environment(self.public(pipeline), {
                    **{k: v for k, v in job.items() if not k.startswith("_")},
                    "environment": expand(environment["name"], variables)})
            if job["_when"] == "manual":
                self._set(pipeline, job, "manual")
                continue
            threading.Thread(target=self._run_job, args=(pipeline, job, config),
                             daemon=True).start()
        if self.lose_create_responses:
            self.lose_create_responses -= 1
            return 502, {"message": "502 Bad Gateway"}
        return 201, self.public(pipeline)

    def list(self, query: dict[str, str]) -> list[dict]:
        with self.lock:
            found = [p for p in self.pipelines.values()
                     if all(str(p.get(k)) == v for k, v in query.items() if k in ("name", "source",
                                                                                   "ref", "status"))]
            return [self.public(p) for p in sorted(found, key=lambda p: -p["id"])]

    def get(self, pid: int) -> dict | None:
        with self.lock:
            pipeline = self.pipelines.get(pid)
            return self.public(pipeline) if pipeline else None

    def jobs(self, pid: int) -> list[dict]:
        with self.lock:
            pipeline = self.pipelines[pid]
            return [{**{k: v for k, v in j.items() if not k.startswith("_")},
                     "pipeline": {"id": pid, "project_id": pipeline["project_id"],
                                  "ref": pipeline["ref"], "status": pipeline["status"]}}
                    for j in reversed(pipeline["_jobs"])]

    def cancel(self, pid: int) -> dict:
        with self.lock:
            pipeline = self.pipelines[pid]
            pipeline["_cancel"] = True
            for job in pipeline["_jobs"]:
                proc = job.get("_proc")
                if proc is not None and proc.poll() is None:
                    _signal(proc.pid, signal.SIGTERM)  # what a runner does to a canceled job
                elif job["status"] not in FINAL:
                    self._set(pipeline, job, "canceled")
            return self.public(pipeline)

    def lose_runner(self, job_id: int) -> None:
        """The machine running a job vanishes (a spot instance reclaimed): every process of the
        job dies at once (SIGKILL, no handler runs) and GitLab fails the job with
        runner_system_failure, as the runner manager reports a lost executor."""
        with self.lock:
            [job] = [j for p in self.pipelines.values() for j in p["_jobs"] if j["id"] == job_id]
            job["_lost"] = True
            _signal(job["_proc"].pid, signal.SIGKILL)

    def freeze(self, job_id: int, frozen: bool = True) -> None:
        """Test control, not a GitLab API: stop (SIGSTOP) or continue (SIGCONT) every process of
        a running job, so a test can look at what it is doing without it moving on."""
        with self.lock:
            [job] = [j for p in self.pipelines.values() for j in p["_jobs"] if j["id"] == job_id]
            _signal(job["_proc"].pid, signal.SIGSTOP if frozen else signal.SIGCONT)

    def public(self, pipeline: dict) -> dict:
        return {k: v for k, v in pipeline.items() if not k.startswith("_")}

    def play(self, job_id: int) -> tuple[int, object]:
        """`POST jobs/:id/play`: a manual job starts; one whose deployment waits for approvals
        is not playable (GitLab keeps it blocked until they are given)."""
        with self.lock:
            found = [(p, j) for p in self.pipelines.values() for j in p["_jobs"]
                     if j["id"] == job_id]
            if not found:
                return 404, {"message": "404 Job Not Found"}
            pipeline, job = found[0]
            deployment = job.get("_deployment")
            waiting = deployment is not None and deployment["status"] == "blocked" and (
                deployment["pending_approval_count"] > 0
                or deployment["deployable"]["status"] == "failed")  # rejected: dropped
            if job["status"] != "manual" or waiting:
                return 403, {"message": "403 Forbidden - Job is not playable"}
            self._set(pipeline, job, "created")
        config = yaml.safe_load(self.ci_yaml.read_text())
        threading.Thread(target=self._run_job, args=(pipeline, job, config), daemon=True).start()
        return 200, {k: v for k, v in job.items() if not k.startswith("_")}

    def variables(self, pid: int) -> dict[str, str]:
        return dict(self.pipelines[pid]["_pipeline_variables"])

    # -- the runner -----------------------------------------------------------------------
    def _when(self, job: dict, variables: dict[str, str]) -> str | None:
        """The `when` of the job's first matching rule; None when it is not in the pipeline."""
        for rule in job.get("rules") or [{}]:
            if "if" in rule and not rule_matches(rule["if"], variables):
                continue
            when = rule.get("when", "on_success")  # changes: true in API pipelines
            return None if when == "never" else when
        return None

    def _set(self, pipeline: dict, job: dict, status: str, reason: str | None = None) -> None:
        with self.lock:
            job["status"], job["failure_reason"] = status, reason
            if job.get("_deployment"):  # GitLab's deployment follows its job
                deployment = job["_deployment"]
                deployment["deployable"]["status"] = status
                if status in ("running", "success", "failed", "canceled"):
                    deployment["status"] = status
            if status == "running":
                job["started_at"] = now()
            if status in FINAL:
                job["finished_at"] = now()
            statuses = [j["status"] for j in pipeline["_jobs"]]
            for candidate in ("running", "pending", "created", "failed", "canceled", "manual"):
                if candidate in statuses:
                    pipeline["status"] = candidate
                    break
            else:
                pipeline["status"] = "success"
            pipeline["updated_at"] = now()

    def _run_job(self, pipeline: dict, job: dict, config: dict) -> None:
        self._set(pipeline, job, "pending")
        tags = set(job["tag_list"])
        waited = 0.0
        while (waited < self.pending_s or (self.runner_tags is not None
                                           and not tags <= self.runner_tags)):
            if pipeline["_cancel"]:
                return
            time.sleep(0.1)
            waited += 0.1
        if pipeline["_cancel"]:
            return
        if job["name"] not in RUNNABLE:
            return self._set(pipeline, job, "failed", "fake_runner_runs_only_flow_run")
        if self.fail_before_script:
            return self._set(pipeline, job, "failed", self.fail_before_script)
        spec, variables = job["_spec"], dict(pipeline["_variables"])
        env = {**variables, "CI_PIPELINE_ID": str(pipeline["id"]), "CI_JOB_ID": str(job["id"]),
               "CI_JOB_URL": job["web_url"], "CI_PIPELINE_URL": pipeline["web_url"]}
        for key, value in (spec.get("variables") or {}).items():
            if key not in pipeline["_pipeline_variables"]:  # pipeline variables win
                env[key] = expand(value, env)
        env = {**env, **self.runner_env, **pipeline["_pipeline_variables"]}
        job["_image"] = expand(spec.get("image", ""), env)
        script = "\n".join([*spec.get("before_script", []), *spec["script"]])
        log = self.logs[job["id"]] = self.log_dir / f"job-{job['id']}.log"
        with self.lock:
            if pipeline["_cancel"]:
                return self._set(pipeline, job, "canceled")
            with open(log, "w") as out:
                job["_proc"] = subprocess.Popen(
                    ["bash", "-eo", "pipefail", "-c", script], cwd=self.checkout, env=env,
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            self._set(pipeline, job, "running")
        code = job["_proc"].wait()
        if pipeline["_cancel"]:
            self._set(pipeline, job, "canceled")
        elif job.get("_lost"):
            self._set(pipeline, job, "failed", "runner_system_failure")
        else:
            self._set(pipeline, job, "success" if code == 0 else "failed",
                      None if code == 0 else "script_failure")

    def stop(self) -> None:
        """Terminate jobs still running (test teardown)."""
        with self.lock:
            for pipeline in self.pipelines.values():
                for job in pipeline["_jobs"]:
                    proc = job.get("_proc")
                    if proc is not None and proc.poll() is None:
                        _signal(proc.pid, signal.SIGKILL)
