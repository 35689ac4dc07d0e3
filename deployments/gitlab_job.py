"""The `gitlab-ci` worker's job template (what a pool or deployment may set) and its pure rules:
which variables a pipeline gets, when the worker cancels a pipeline, when a run is crashed."""

from __future__ import annotations

import re
from typing import Any

from prefect.workers.base import BaseJobConfiguration, BaseVariables
from pydantic import BaseModel, Field, PrivateAttr

from deployments.manifest import DEPLOY_FLOW

# never sent as pipeline variables (project members can read those): CI/CD variables instead
SECRET_NAME = re.compile(r"TOKEN|PASSWORD|SECRET|API_KEY|AUTH_STRING|PRIVATE_KEY", re.IGNORECASE)
# GitLab sets its own CI_* in the flow-run pipeline; only the merge request it reports to travels
CI_KEPT = ("CI_MERGE_REQUEST_IID",)
WAITING = frozenset({"created", "waiting_for_resource", "preparing", "pending", "scheduled",
                     "manual"})
# a job that runs the flow cancels it itself (`prefect flow-run execute` watches the run):
# the worker cancels its pipeline only if it has not stopped after this long
CANCEL_GRACE_S = 60.0
FLOW_RUN_JOB = "flow-run"
# runs of the deploy flow have their own job: GitLab's production environment, one per model at a time
DEPLOY_RUN_JOB = "deploy-run"
# a run that was paused or suspended before (a deploy run resumed after its approval): its first
# pipeline holds the production-approval job, so .gitlab-ci.yml adds none to this one
RESUMED = "MLOPS_RESUMED"


def _field(default: Any, title: str, description: str) -> Any:
    return Field(default=default, title=title, description=description)


class GitLabFields(BaseModel):
    """The fields a pool or deployment sets (the configuration and its variables share them)."""

    ref: str = _field("", "Git ref", "Branch or tag the pipeline runs on (its .gitlab-ci.yml and "
                      "code). Empty: the project's default branch.")
    runner_tag: str = _field("", "Runner tag", "Runner tag the flow-run job asks for "
                             "(MLOPS_RUNNER_TAG in .gitlab-ci.yml).")
    image: str = _field("", "Image", "Image of the flow-run job (MLOPS_IMAGE). Empty: the job's "
                        "default, $TRAIN_IMAGE_NAME:latest.")
    job_name: str = _field(FLOW_RUN_JOB, "Job name", "The job in .gitlab-ci.yml that runs "
                           "`prefect flow-run execute`; its status decides the run's fate.")
    prefect_api_url: str = _field("", "Prefect API URL for runners", "PREFECT_API_URL as the "
                                  "runners reach it. Empty: the worker's own.")
    pending_timeout_s: int = _field(0, "Pending timeout (s)", "How long the job may wait for a "
                                    "runner with the tag before the worker cancels the pipeline "
                                    "and crashes the run. 0: as long as GitLab keeps the job "
                                    "pending (GitLab fails stuck jobs itself). Run time is "
                                    "limited by the job's timeout in .gitlab-ci.yml.")
    poll_interval_s: float = _field(10.0, "Poll interval (s)", "How often the worker reads the "
                                    "pipeline and the flow run.")


class GitLabCIJobConfiguration(BaseJobConfiguration, GitLabFields):
    _explicit_env: dict[str, str] = PrivateAttr(default_factory=dict)
    _flow: str = PrivateAttr(default="")
    _model: str = PrivateAttr(default="")
    _resumed: bool = PrivateAttr(default=False)

    def prepare_for_flow_run(self, flow_run, deployment=None, flow=None, work_pool=None,
                             worker_name=None, worker_id=None) -> None:
        # what the pool, deployment and run asked for, before the base class adds every
        # setting of the worker process (PREFECT_API_KEY included)
        self._explicit_env = {k: v for k, v in self.env.items() if v is not None}
        super().prepare_for_flow_run(flow_run, deployment, flow, work_pool, worker_name,
                                     worker_id=worker_id)
        model = (flow_run.parameters or {}).get("model")
        self._flow, self._model = (flow.name if flow else ""), (model if isinstance(model, str)
                                                                else "")
        policy = flow_run.empirical_policy
        self._resumed = bool(policy.resuming or policy.pause_keys)

    @property
    def followed_job(self) -> str:
        """The job whose status decides the run's fate: deploy-run for the deploy flow's runs
        (unless the pool names its own job), else job_name."""
        if self._flow == DEPLOY_FLOW and self.job_name == FLOW_RUN_JOB:
            return DEPLOY_RUN_JOB
        return self.job_name

    def pipeline_variables(self, pipeline_name: str, api_url: str
                           ) -> tuple[dict[str, str], list[str]]:
        """The pipeline's variables (an allow-list) and the env names left out as secrets."""
        dropped = sorted(k for k in self._explicit_env if SECRET_NAME.search(k))
        chosen = {k: v for k, v in self._explicit_env.items() if k not in dropped
                  and (not k.startswith(("CI_", "GITLAB_")) or k in CI_KEPT)}
        chosen.update({
            "PREFECT__FLOW_RUN_ID": self.env["PREFECT__FLOW_RUN_ID"] or "",
            "PREFECT_API_URL": self.prefect_api_url or api_url,
            "MLOPS_RUNNER_TAG": self.runner_tag,
            "MLOPS_IMAGE": self.image,
            "MLOPS_PIPELINE_NAME": pipeline_name,
            "MLOPS_FLOW": self._flow,           # picks flow-run or deploy-run in .gitlab-ci.yml
            "MLOPS_MODEL": self._model,         # deploy-run's resource_group: production-<model>
            RESUMED: "true" if self._resumed else "",  # no second production-approval job
        })
        return {k: str(v) for k, v in chosen.items() if v}, dropped


class GitLabCIVariables(BaseVariables, GitLabFields):
    """The pool's job variables: the UI form and the defaults `mlops pools apply` fills in."""


def leave_alone(state_type: str | None) -> bool:
    """A run someone already decided about: finished, paused or suspended (an approval waits),
    scheduled again (resumed), or being cancelled. Never crash those."""
    return state_type in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED", "PAUSED", "SCHEDULED",
                          "CANCELLING")


def superseded(run_pid: str | None, followed_pid: str) -> bool:
    """The run went to another pipeline since this one started (scheduled again after a crash,
    e.g. by the re-run automation): this pipeline's end says nothing about the run now."""
    return bool(run_pid) and run_pid != followed_pid


def should_cancel(state_type: str | None, job_status: str | None,
                  cancelling_for_s: float) -> bool:
    """Cancel the pipeline of a run cancelled in Prefect: at once while no job runs it, after a
    grace period if the running job has not stopped by itself."""
    if state_type not in ("CANCELLING", "CANCELLED"):
        return False
    return job_status != "running" or cancelling_for_s >= CANCEL_GRACE_S


def only_a_person_left(pipeline_status: str, job_status: str | None) -> bool:
    """The run's job has ended and its pipeline waits only on a manual job (production-approval,
    blocked until GitLab's approvals are given, maybe for days): nothing left to follow."""
    return pipeline_status == "manual" and job_status in ("success", "failed", "canceled",
                                                          "skipped")


def waited_too_long(job_status: str | None, waited_s: float, timeout_s: int) -> bool:
    return bool(timeout_s) and (job_status is None or job_status in WAITING) \
        and waited_s >= timeout_s


def crash_message(pipeline_status: str, pipeline_url: str, job_name: str, job_status: str | None,
                  job_url: str | None, failure_reason: str | None) -> str:
    """Why the flow run crashed, with the link to look at."""
    if job_status is None:
        return (f"GitLab pipeline {pipeline_status} without a {job_name!r} job: {pipeline_url} "
                f"(check the job's rules in .gitlab-ci.yml)")
    reason = f" ({failure_reason})" if failure_reason else ""
    return f"GitLab job {job_name!r} {job_status}{reason}: {job_url} (pipeline {pipeline_url})"
