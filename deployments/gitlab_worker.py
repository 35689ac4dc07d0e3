"""The `gitlab-ci` Prefect worker: every flow run of a pool becomes one GitLab pipeline whose
`flow-run` job (in .gitlab-ci.yml) runs `prefect flow-run execute` on a runner with the pool's tag.

The worker is light (it runs next to the Prefect server, never on a GPU): it starts the pipeline,
links its job on the flow run, crashes the run with the job's URL when the pipeline fails before
the flow could report, and cancels the pipeline when the run is cancelled in Prefect. Found by
`prefect worker start --pool gpu-runners` through the `prefect.collections` entry point; GitLab
settings come from CI_SERVER_URL, CI_PROJECT_ID and MLOPS_GITLAB_TOKEN (or its block)."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING
from uuid import uuid4

import anyio
import anyio.abc
from prefect.workers.base import BaseWorker, BaseWorkerResult

from deployments.gitlab_job import (
    GitLabCIJobConfiguration,
    GitLabCIVariables,
    crash_message,
    leave_alone,
    only_a_person_left,
    should_cancel,
    superseded,
    waited_too_long,
)

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

    from tasks.adapters.gitlab_pipelines import Job, Pipeline, Pipelines, Project

NEEDS = ("the gitlab-ci worker needs CI_SERVER_URL, CI_PROJECT_ID and MLOPS_GITLAB_TOKEN (a token "
         "with the api scope) or MLOPS_GITLAB_TOKEN_BLOCK")


class GitLabCIWorkerResult(BaseWorkerResult):
    """identifier: `gitlab:<project id>:<pipeline id>`."""


def parse_pid(infrastructure_pid: str) -> tuple[str, int]:
    """`gitlab:<project>:<pipeline>` → (project id, pipeline id)."""
    kind, _, rest = infrastructure_pid.partition(":")
    project, _, pipeline = rest.rpartition(":")
    if kind != "gitlab" or not project or not pipeline.isdigit():
        raise ValueError(f"not a GitLab pipeline: {infrastructure_pid!r}")
    return project, int(pipeline)


class GitLabCIWorker(BaseWorker[GitLabCIJobConfiguration, GitLabCIVariables, GitLabCIWorkerResult]):
    type = "gitlab-ci"
    job_configuration = GitLabCIJobConfiguration
    job_configuration_variables = GitLabCIVariables
    _description = ("Runs each flow run as a GitLab CI pipeline whose flow-run job executes it on "
                    "a runner with the pool's tag.")
    _display_name = "GitLab CI"
    _documentation_url = "https://docs.gitlab.com/api/pipelines/"
    _logo_url = "https://about.gitlab.com/images/press/logo/png/gitlab-icon-rgb.png"

    _gitlab: Pipelines | None = None
    _project: Project | None = None

    async def setup(self) -> None:
        """Check GitLab before anything else: a missing or insufficient token stops the worker
        with one line instead of crashing every run later."""
        await self.connect()
        await super().setup()

    async def connect(self) -> Project:
        from tasks.adapters.gitlab_pipelines import Pipelines
        from tasks.core.errors import MlopsError
        from tasks.core.redact import redact
        from tasks.core.settings import Settings

        try:
            settings = Settings.from_env().gitlab
            if settings is None:
                raise SystemExit(f"error: {NEEDS}")
            self._gitlab = await anyio.to_thread.run_sync(Pipelines, settings)
            self._project = await anyio.to_thread.run_sync(self._gitlab.check_access)
        except MlopsError as exc:
            text = str(exc).strip().splitlines()
            raise SystemExit(f"error: gitlab-ci worker: {redact(text[0] if text else repr(exc))}"
                             ) from None
        self._logger.info("GitLab project %s (%s): pipelines on %s unless a deployment sets ref",
                          self._project.path or self._project.id, self._project.web_url,
                          self._project.default_branch)
        return self._project

    async def run(self, flow_run: FlowRun, configuration: GitLabCIJobConfiguration,
                  task_status: anyio.abc.TaskStatus[int] | None = None) -> GitLabCIWorkerResult:
        """Start the run's pipeline, report it started, follow it to its end."""
        from prefect.settings import PREFECT_API_URL

        gitlab, project = self._connected()
        logger = self.get_flow_run_logger(flow_run)
        name = f"prefect {flow_run.name} {flow_run.id} #{uuid4().hex[:8]}"
        variables, dropped = configuration.pipeline_variables(name, PREFECT_API_URL.value() or "")
        if dropped:
            logger.warning("Not sent to GitLab (pipeline variables are visible to project "
                           "members; set them as masked CI/CD variables): %s", ", ".join(dropped))
        ref = configuration.ref or project.default_branch
        pipeline = await anyio.to_thread.run_sync(gitlab.create, ref, variables, name)
        pid = f"gitlab:{pipeline.project_id}:{pipeline.id}"
        logger.info("GitLab pipeline %s on %s for runners tagged %r", pipeline.web_url, ref,
                    configuration.runner_tag)
        if task_status is not None:
            # Prefect types the identifier as a process id (int); it stores whatever is given
            task_status.started(pid)  # type: ignore[arg-type]
        await self._follow(flow_run, configuration, pipeline)
        return GitLabCIWorkerResult(identifier=pid, status_code=0)

    def _connected(self) -> tuple[Pipelines, Project]:
        if self._gitlab is None or self._project is None:
            raise RuntimeError("the gitlab-ci worker is not connected to GitLab (use it as an "
                               "async context manager)")
        return self._gitlab, self._project

    async def _follow(self, flow_run: FlowRun, c: GitLabCIJobConfiguration,
                      started: Pipeline) -> None:
        """Poll the pipeline and the run until the pipeline ends; then crash the run if its job
        failed or was canceled while the run still looked alive (a green pipeline is not a
        successful flow: `prefect flow-run execute` exits 0 for any final state, and the engine
        reports those itself)."""
        gitlab, _ = self._connected()
        logger = self.get_flow_run_logger(flow_run)
        begun, linked, cancel_seen, canceled, unreachable = time.monotonic(), None, None, False, False
        while True:
            try:
                pipeline = await anyio.to_thread.run_sync(gitlab.pipeline, started.id)
                job = await anyio.to_thread.run_sync(gitlab.job, started.id, c.followed_job)
            except Exception as exc:
                from tasks.core.errors import GitLabUnavailable

                if not isinstance(exc, GitLabUnavailable):
                    raise
                if await self._state(flow_run) in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                    logger.info("GitLab unreachable and the run has ended: stopped following %s",
                                started.web_url)
                    return
                if not unreachable:
                    logger.warning("%s; still following pipeline %s", exc, started.web_url)
                unreachable = True
                await anyio.sleep(c.poll_interval_s)
                continue
            unreachable = False
            if job is not None and job.web_url != linked:
                linked = job.web_url
                await self._link(flow_run, pipeline, job)
            if pipeline.final or only_a_person_left(pipeline.status, job.status if job else None):
                break
            state = await self._state(flow_run)
            if state in ("CANCELLING", "CANCELLED"):
                cancel_seen = cancel_seen or time.monotonic()
            if not canceled and should_cancel(state, job.status if job else None,
                                              time.monotonic() - (cancel_seen or time.monotonic())):
                await anyio.to_thread.run_sync(gitlab.cancel, started.id)
                canceled = True
                logger.info("Flow run cancelled in Prefect: canceled GitLab pipeline %s",
                            pipeline.web_url)
                if state == "CANCELLING":
                    await self._mark_flow_run_as_cancelled(flow_run, {
                        "message": f"GitLab pipeline {pipeline.web_url} canceled."})
            elif not canceled and waited_too_long(job.status if job else None, time.monotonic() - begun,
                                                  c.pending_timeout_s):
                await anyio.to_thread.run_sync(gitlab.cancel, started.id)
                await self._crash_unless_moved_on(flow_run, pipeline, (
                    f"No GitLab runner tagged {c.runner_tag!r} picked up job {c.followed_job!r} "
                    f"within {c.pending_timeout_s}s: {linked or pipeline.web_url}; pipeline "
                    "canceled"))
                return
            await anyio.sleep(c.poll_interval_s)
        await self._finish(flow_run, c, pipeline, job)

    async def _finish(self, flow_run: FlowRun, c: GitLabCIJobConfiguration, pipeline: Pipeline,
                      job: Job | None) -> None:
        if job is not None and job.status == "success":
            return
        if leave_alone(await self._state(flow_run)):
            return
        await self._crash_unless_moved_on(flow_run, pipeline, crash_message(
            pipeline.status, pipeline.web_url, c.followed_job, job.status if job else None,
            job.web_url if job else None, job.failure_reason if job else None))

    async def _state(self, flow_run: FlowRun) -> str | None:
        current = await self.client.read_flow_run(flow_run.id)
        return current.state.type.value if current.state else None

    async def _crash_unless_moved_on(self, flow_run: FlowRun, pipeline: Pipeline,
                                     message: str) -> None:
        """Crash the run, unless it is another pipeline's now (a re-run after a crash)."""
        current = await self.client.read_flow_run(flow_run.id)
        if superseded(current.infrastructure_pid, f"gitlab:{pipeline.project_id}:{pipeline.id}"):
            self.get_flow_run_logger(flow_run).info(
                "GitLab pipeline %s ended %s; the run is pipeline %s's now: left alone",
                pipeline.web_url, pipeline.status, current.infrastructure_pid)
            return
        await self._propose_crashed_state(flow_run, message)

    async def _link(self, flow_run: FlowRun, pipeline: Pipeline, job: Job) -> None:
        """The job's URL on the flow run: a log line, labels and a markdown artifact."""
        from prefect.client.schemas.actions import ArtifactCreate

        self.get_flow_run_logger(flow_run).info("GitLab job %s (%s): %s", job.name, job.status,
                                                job.web_url)
        try:
            await self.client.update_flow_run_labels(flow_run.id, {
                "gitlab.pipeline.url": pipeline.web_url, "gitlab.job.url": job.web_url})
            await self.client.create_artifact(ArtifactCreate(
                type="markdown", flow_run_id=flow_run.id, description="GitLab job of this run",
                data=f"GitLab job [{job.name} #{job.id}]({job.web_url}) in pipeline "
                     f"[#{pipeline.id}]({pipeline.web_url})"))
        except Exception as exc:  # a link is a convenience: never fail the run for it
            self._logger.warning("could not link GitLab job %s on flow run %s: %s", job.web_url,
                                 flow_run.id, exc)

    async def kill_infrastructure(self, infrastructure_pid: str,
                                  configuration: GitLabCIJobConfiguration,
                                  grace_seconds: int = 30) -> None:
        """Cancel the run's pipeline (Prefect calls this for runs cancelled before they start)."""
        from prefect.exceptions import InfrastructureNotAvailable, InfrastructureNotFound

        from tasks.adapters.gitlab_pipelines import Pipelines
        from tasks.core.errors import GitLabRefused

        try:
            project, pipeline = parse_pid(infrastructure_pid)
        except ValueError as exc:
            raise InfrastructureNotAvailable(str(exc)) from None
        gitlab, _ = self._connected()
        settings = dataclasses.replace(gitlab.settings, project_id=project)
        try:
            await anyio.to_thread.run_sync(lambda: Pipelines(settings).cancel(pipeline))
        except GitLabRefused as exc:
            if exc.status == 404:
                raise InfrastructureNotFound(f"GitLab pipeline {infrastructure_pid}") from None
            raise InfrastructureNotAvailable(str(exc)) from None

