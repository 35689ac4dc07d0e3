"""`mlops status`: what is in production and what is waiting, per model, read from the registry
(aliases, last training and monitoring runs) and, when there is one, the Prefect server
(pending approvals, last runs of each flow, next scheduled runs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tasks.core.config import ModelConfig
from tasks.core.redact import redact
from tasks.core.settings import Settings

CHALLENGER = "challenger"
FLOWS = {"training": "training-pipeline", "scoring": "batch-scoring", "monitoring": "monitoring"}
NO_SERVER = "no Prefect server (PREFECT_API_URL unset and no `mlops server start`)"


@dataclass(frozen=True)
class AliasVersion:
    alias: str
    version: str | None
    metric: str = ""
    value: str = ""


@dataclass(frozen=True)
class LastRun:
    kind: str           # training | scoring | monitoring
    when: str           # ISO time, UTC
    outcome: str        # FINISHED/FAILED (MLflow), a Prefect state name, or a drift verdict
    detail: str = ""
    link: str = ""


@dataclass(frozen=True)
class Pending:
    version: str
    flow_run: str
    link: str


@dataclass(frozen=True)
class NextRun:
    deployment: str
    when: str
    source: str         # server | prefect.yaml


@dataclass
class ModelStatus:
    model: str
    aliases: list[AliasVersion] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)  # aliases not where the signed trail says
    pending: list[Pending] | None = None   # None: unknown without a Prefect server
    last: list[LastRun] = field(default_factory=list)
    next_runs: list[NextRun] = field(default_factory=list)


def _iso(millis: int | None) -> str:
    if not millis:
        return ""
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="seconds")


def _mlflow_link(found: Settings, run) -> str:
    ui = redact(found.mlflow_ui_url) if found.mlflow_ui_url else None
    return f"{ui}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}" if ui else \
        f"MLflow run {run.info.run_id}"


def from_registry(found: Settings, registry, cfg: ModelConfig) -> ModelStatus:
    """Champion, staging and challenger versions with the gate metric; the last training and
    monitoring runs in MLflow."""
    from tasks.adapters.audit_trail import AuditTrail
    from tasks.core.errors import TrailMismatch
    from tasks.release.guard import alias_as_recorded

    status = ModelStatus(cfg.name)
    events = AuditTrail(registry, cfg.name, settings=found,
                        key=found.resolve_audit_key()).events()
    for alias in (cfg.deploy.production.alias, cfg.deploy.staging.alias, CHALLENGER):
        try:
            alias_as_recorded(registry, cfg.name, alias, events)
        except TrailMismatch as exc:
            status.moved.append(str(exc))
        version = registry.alias_version(cfg.name, alias)
        tags = registry.require_version(cfg.name, version).tags if version else {}
        status.aliases.append(AliasVersion(alias, version, tags.get("gate_metric", ""),
                                           tags.get("gate_value", "")))
    runs = registry.all_runs(registry.training_experiment(cfg.name))
    if runs:
        run = runs[-1]
        metric = run.data.metrics.get(f"test_{cfg.gate.metric}")
        gate = run.data.metrics.get("gate_passed")
        detail = (f"{cfg.gate.metric} {metric:.4f}" if metric is not None else "") + (
            "" if gate is None else f", gate {'passed' if gate else 'rejected'}")
        status.last.append(LastRun("training", _iso(run.info.start_time), run.info.status,
                                   detail.strip(", "), _mlflow_link(found, run)))
    runs = registry.all_runs(f"monitoring/{cfg.name}")
    if runs:
        run = runs[-1]
        status.last.append(LastRun(
            "monitoring", _iso(run.info.start_time), run.data.tags.get("verdict", run.info.status),
            f"v{run.data.tags.get('model_version', '?')}, {int(run.data.metrics.get('rows', 0))} "
            "rows", _mlflow_link(found, run)))
    return status


def from_prefect(found: Settings, statuses: dict[str, ModelStatus]) -> None:
    """Pending approvals and the last scoring run (and the last training or monitoring run when
    MLflow has none) from the Prefect server: plain HTTP, or Prefect's client where the server
    wants credentials."""
    from tasks.core.plain_http import NeedsClient

    try:
        _from_prefect_http(found, statuses)
    except NeedsClient:
        _from_prefect_client(found, statuses)


def _from_prefect_http(found: Settings, statuses: dict[str, ModelStatus]) -> None:
    """from_prefect over the REST API, with the filters Prefect's client sends."""
    from tasks.adapters.prefect_rest import flow_runs, when
    from tasks.release.waiting import AWAITING

    api, ui = found.prefect_api_url or "", found.prefect_ui_url or ""
    waiting = flow_runs(api, ["deploy"], states=["PAUSED"], tags=[AWAITING])
    for status in statuses.values():
        status.pending = []
    for run in waiting:  # the deploy runs `mlops approve` would find
        model = str((run.get("parameters") or {}).get("model"))
        if model in statuses:
            statuses[model].pending.append(Pending(  # type: ignore[union-attr]
                str((run.get("parameters") or {}).get("version")), run["id"],
                f"{ui}/runs/flow-run/{run['id']}"))
    for kind, flow in FLOWS.items():
        runs = flow_runs(api, [flow], not_states=["SCHEDULED", "PENDING"],
                         sort="START_TIME_DESC", limit=200)
        for status in statuses.values():
            if any(last.kind == kind for last in status.last):
                continue
            mine = [r for r in runs if (r.get("parameters") or {}).get("model") == status.model]
            if mine and mine[0].get("state"):
                run = mine[0]
                at = when(run.get("start_time")) or when(run.get("expected_start_time"))
                status.last.append(LastRun(
                    kind, at.astimezone(UTC).isoformat(timespec="seconds") if at else "",
                    run["state"].get("name", ""), run["state"].get("message") or "",
                    f"{ui}/runs/flow-run/{run['id']}"))


def _from_prefect_client(found: Settings, statuses: dict[str, ModelStatus]) -> None:
    """from_prefect through Prefect's client."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    from deployments.approval import pending

    ui = found.prefect_ui_url or ""
    for status in statuses.values():
        status.pending = []
    for waiting in pending(found):  # the deploy runs `mlops approve` would find
        queue = statuses[waiting.model].pending if waiting.model in statuses else None
        if queue is not None:
            queue.append(Pending(
                waiting.version, waiting.flow_run_id,
                f"{ui}/runs/flow-run/{waiting.flow_run_id}"))
    with get_client(sync_client=True) as client:
        for kind, flow in FLOWS.items():
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
                    not_any_=[StateType.SCHEDULED, StateType.PENDING]))),
                sort=FlowRunSort.START_TIME_DESC, limit=200)
            for status in statuses.values():
                if any(last.kind == kind for last in status.last):
                    continue
                run = next((r for r in runs if r.parameters.get("model") == status.model), None)
                if run is not None and run.state is not None:
                    when = run.start_time or run.expected_start_time
                    status.last.append(LastRun(
                        kind, when.astimezone(UTC).isoformat(timespec="seconds") if when else "",
                        run.state.name or "", run.state.message or "", f"{ui}/runs/flow-run/{run.id}"))


def next_runs(statuses: dict[str, ModelStatus], server: bool, manifest: Path,
              api_url: str | None = None) -> None:
    """The next scheduled run of each deployment whose name names the model (from the server
    at api_url when there is one)."""
    import asyncio

    from deployments.schedules import from_manifest, from_server, from_server_http
    from tasks.core.plain_http import NeedsClient

    if not server and not manifest.is_file():
        return
    if server:
        try:
            rows = from_server_http(api_url or "")
        except NeedsClient:
            rows = asyncio.run(from_server())
    else:
        rows = from_manifest(manifest, validate=False)  # a display: no Prefect import
    for row in rows:
        if not row.active or row.next_run is None:
            continue
        for status in statuses.values():
            if status.model in row.deployment.split("/")[-1]:
                status.next_runs.append(NextRun(
                    row.deployment, row.next_run.astimezone(UTC).isoformat(timespec="minutes"),
                    "server" if server else "prefect.yaml"))
    for status in statuses.values():
        status.next_runs.sort(key=lambda r: r.when)
