"""GitLab CI glue: a commit message `train <model>…` starts deployment runs and watches them."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.schemas.objects import StateType

from deployments.manifest import NOTEBOOK_DEPLOYMENT, TRAINING_FLOW
from deployments.schedules import training_data_date
from tasks.core.errors import STATE_EXITS, ConfigError, ExitCode
from tasks.core.settings import CI_FORWARDED
from tasks.release.handoff import pool_env

TRAIN_MESSAGE = re.compile(r"^\s*train\s+(?P<targets>\S.*?)\s*$", re.IGNORECASE)
FINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}
# which run's outcome decides the job's exit code: the worst one
SEVERITY = (ExitCode.DONE, ExitCode.GATE_REJECTED, ExitCode.FAILED)
NOISE = re.compile(r"^Finished in state Completed\(\)$")


@dataclass(frozen=True)
class CiContext:
    """What GitLab CI tells a job about itself (the subset the trigger needs)."""

    commit_message: str
    pipeline_id: str
    commit_sha: str = ""
    ref: str = ""
    job_url: str = ""
    pipeline_url: str = ""
    as_of: date | None = None
    gitlab: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CiContext:
        message = env.get("CI_COMMIT_MESSAGE") or env.get("CI_COMMIT_TITLE") or ""
        pipeline = env.get("CI_PIPELINE_ID", "")
        if not pipeline:
            raise ConfigError("CI_PIPELINE_ID is not set: `mlops ci` runs inside a GitLab CI job "
                              "(set CI_COMMIT_MESSAGE and CI_PIPELINE_ID to simulate one)")
        day = training_data_date(env.get("TRAINING_DATA_DATE"))
        return cls(commit_message=message, pipeline_id=pipeline,
                   commit_sha=env.get("CI_COMMIT_SHA", ""), ref=env.get("CI_COMMIT_REF_NAME", ""),
                   job_url=env.get("CI_JOB_URL", ""), pipeline_url=env.get("CI_PIPELINE_URL", ""),
                   as_of=day, gitlab={k: env[k] for k in CI_FORWARDED if env.get(k)})

    def tags(self) -> list[str]:
        out = [f"gitlab-pipeline:{self.pipeline_id}"]
        if self.ref:
            out.append(f"ref:{self.ref}")
        if self.commit_sha:
            out.append(f"sha:{self.commit_sha[:12]}")
        return out


def parse_targets(message: str) -> list[str] | None:
    """`train fraud damage` → ['fraud', 'damage']; None when the commit asks for no training."""
    first = message.strip().splitlines()[0] if message.strip() else ""
    match = TRAIN_MESSAGE.match(first)
    if not match:
        return None
    targets = [t for t in re.split(r"[\s,]+", match.group("targets")) if t]
    return list(dict.fromkeys(targets))


def check_targets(targets: list[str], known_models: set[str], project: Path | None = None
                  ) -> list[str]:
    """Models and notebooks to run, or a ConfigError naming what cannot run (before any run
    starts). Notebooks are paths in the project (CI_PROJECT_DIR)."""
    from tasks.training.notebook import check_notebook

    for target in targets:
        if target.endswith(".ipynb"):
            check_notebook(str((project or Path.cwd()) / target))
    unknown = [t for t in targets if not t.endswith(".ipynb") and t not in known_models]
    if unknown:
        raise ConfigError(f"commit message names unknown model(s) {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(known_models)) or 'none'}); no run started")
    return targets


def deployment_for(target: str) -> tuple[str, dict[str, str]]:
    """The deployment a target runs on and the parameters it adds."""
    if target.endswith(".ipynb"):
        return NOTEBOOK_DEPLOYMENT, {"notebook": target}
    return f"{TRAINING_FLOW}/{target}", {}


def idempotency_key(ctx: CiContext, target: str) -> str:
    """One run per pipeline and target: a retried trigger job finds the run it started before."""
    deployment, _ = deployment_for(target)
    suffix = "" if deployment.endswith(f"/{target}") else f":{target}"
    return f"gitlab-pipeline-{ctx.pipeline_id}-{deployment}{suffix}"


@dataclass
class Watched:
    model: str
    flow_run_id: UUID
    name: str
    reused: bool
    state: StateType | None = None
    state_name: str = ""  # the final state's name: GateRejected, Completed, Failed, …
    children: set[UUID] = field(default_factory=set)
    follow_up: bool = False  # a deploy run a training run started: done once it awaits approval

    @property
    def done(self) -> bool:
        return self.state in FINAL or (self.follow_up and self.state == StateType.PAUSED)


def outcome(state: StateType | None, name: str, follow_up: bool = False) -> ExitCode:
    """Exit code of one finished run, by its state's name (errors.STATE_EXITS); a deploy run a
    training run started is done once it waits for approval."""
    if follow_up and state == StateType.PAUSED:
        return ExitCode.DONE
    return STATE_EXITS.get(name, ExitCode.DONE if state == StateType.COMPLETED else ExitCode.FAILED)


async def start_runs(client: Any, ctx: CiContext, models: list[str]) -> list[Watched]:
    """Create one flow run per model (idempotent on the pipeline id); deployments are checked
    first, so a missing one starts nothing."""
    from prefect.exceptions import ObjectNotFound

    deployments = {}
    for target in models:
        name, _ = deployment_for(target)
        try:
            deployments[target] = await client.read_deployment_by_name(name)
        except ObjectNotFound:
            raise ConfigError(f"no deployment {name} on the Prefect server: run "
                              f"`prefect --no-prompt deploy --all` first; no run started") from None
    runs = []
    for target, deployment in deployments.items():
        key = idempotency_key(ctx, target)
        existing = await _run_with_key(client, deployment.id, key)
        params = {"as_of": ctx.as_of.isoformat()} if ctx.as_of and not target.endswith(".ipynb") \
            else {}
        params.update(deployment_for(target)[1])
        pool = await client.read_work_pool(deployment.work_pool_name)
        variables: dict[str, Any] = ({"env": {**pool_env(pool, deployment), **ctx.gitlab}}
                                     if ctx.gitlab else {})
        if pool.type == "gitlab-ci" and ctx.ref:
            variables["ref"] = ctx.ref  # the worker's pipeline runs this commit's branch
        run = existing or await client.create_flow_run_from_deployment(
            deployment.id, parameters=params, idempotency_key=key, tags=ctx.tags(),
            job_variables=variables or None)
        runs.append(Watched(model=target, flow_run_id=run.id, name=run.name,
                            reused=existing is not None))
    return runs



async def _run_with_key(client: Any, deployment_id: UUID, key: str) -> Any | None:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterIdempotencyKey,
    )

    found = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(idempotency_key=FlowRunFilterIdempotencyKey(any_=[key])),
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])), limit=1)
    return found[0] if found else None


async def _follow_ups(client: Any, runs: list[Watched]) -> list[Watched]:
    """Deploy runs the training runs started (tagged `training-run:<id>`), not yet watched."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    known, found = {r.flow_run_id for r in runs}, []
    for run in [r for r in runs if not r.follow_up]:
        for other in await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[f"training-run:{run.flow_run_id}"]))):
            if other.id not in known:
                found.append(Watched(model=run.model, flow_run_id=other.id, name=other.name,
                                     reused=False, follow_up=True))
    return found


async def watch(client: Any, runs: list[Watched], emit: Callable[[str], None],
                poll_s: float = 2.0, timeout_s: float | None = None, ui_url: str | None = None
                ) -> int:
    """Stream state changes and logs of the runs, their subflows and the deploy runs they start
    until all have finished (a deploy run waiting for approval counts as finished here: it
    holds no job while it waits)."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
        LogFilterTimestamp,
    )
    from prefect.client.schemas.sorting import LogSort

    since = None
    started = time.monotonic()
    by_run: dict[UUID, Watched] = {}

    async def stream_logs() -> None:
        nonlocal since
        for run in runs:
            for child in await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.flow_run_id]))):
                run.children.add(child.id)
            for rid in (run.flow_run_id, *run.children):
                by_run[rid] = run
        while True:
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=list(by_run)),
                                     timestamp=LogFilterTimestamp(after_=since) if since else None),
                sort=LogSort.TIMESTAMP_ASC, limit=200)
            fresh = [log for log in logs if since is None or log.timestamp > since]
            for log in fresh:
                if not NOISE.match(log.message):
                    emit(f"[{by_run[log.flow_run_id].model}] {log.message}")
                since = log.timestamp
            if len(logs) < 200 or not fresh:
                return

    while True:
        await stream_logs()
        for run in runs:
            flow_run = await client.read_flow_run(run.flow_run_id)
            state = flow_run.state
            name = state.type if state else StateType.PENDING
            if name != run.state:
                if name in FINAL:  # logs are shipped in batches: catch up before the verdict
                    await asyncio.sleep(poll_s)
                    await stream_logs()
                label = state.name if state else "Pending"
                if run.follow_up and name == StateType.PAUSED:
                    label = "waits for approval (no job is held): " + (
                        f"{ui_url.rstrip('/')}/runs/flow-run/{run.flow_run_id} or " if ui_url
                        else "") + f"`mlops approve {run.model}`"
                emit(f"[{run.model}] {run.name}: {label}"
                     + (f" ({state.message})" if state and state.message and name in FINAL else ""))
                run.state, run.state_name = name, state.name if state else ""
        if all(r.done for r in runs):
            fresh = await _follow_ups(client, runs)
            if not fresh:
                return max((outcome(r.state, r.state_name, r.follow_up) for r in runs),
                           key=SEVERITY.index)
            runs.extend(fresh)
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            emit(f"gave up watching after {timeout_s:.0f}s; the runs go on in Prefect")
            return ExitCode.FAILED
        await asyncio.sleep(poll_s)


async def trigger(ctx: CiContext, models: list[str], emit: Callable[[str], None],
                  ui_url: str | None, timeout_s: float | None = None) -> int:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        runs = await start_runs(client, ctx, models)
        for run in runs:
            verb = "already started by this pipeline" if run.reused else "started"
            link = f" {ui_url.rstrip('/')}/runs/flow-run/{run.flow_run_id}" if ui_url else ""
            emit(f"{deployment_for(run.model)[0]} ({run.model}): run {run.name} {verb}{link}"
                 if run.model.endswith(".ipynb") else
                 f"{TRAINING_FLOW}/{run.model}: run {run.name} {verb}{link}")
        return await watch(client, runs, emit, timeout_s=timeout_s, ui_url=ui_url)
