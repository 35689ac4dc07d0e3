"""Deploy stage: staging with live smoke tests, approval, production with freeze windows,
post-deploy checks and automatic rollback; every decision goes to the audit trail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from tasks.adapters.mlflow_registry import Registry
from tasks.core.config import FreezeWindow, ModelConfig, ProductionSpec, SmokeSpec
from tasks.core.errors import ApprovalError, DeployError
from tasks.core.lineage import file_sha256
from tasks.core.localproc import free_port, terminate


class SmokeReport(BaseModel):
    passed: bool
    checks: list[str]
    p95_ms: float | None = None

    @property
    def failures(self) -> list[str]:
        return [c for c in self.checks if c.startswith("FAIL")]


class DeployResult(BaseModel):
    model: str
    version: str
    staging: str
    production: str
    champion: str | None
    message: str


@dataclass(frozen=True)
class LocalVersion:
    """A registered version downloaded for checks: its folder, feature spec and input example."""

    path: Path
    spec: dict
    example: pd.DataFrame
    booster_sha256: str


def now_utc() -> datetime:
    return datetime.now(UTC)


def event(action: str, environment: str, from_version: str | None, to_version: str | None,
          actor: str, comment: str = "", flow_run_id: str | None = None, reason: str = ""
          ) -> dict[str, str]:
    return {"action": action, "environment": environment, "from_version": from_version or "",
            "to_version": to_version or "", "actor": actor, "comment": comment,
            "flow_run_id": flow_run_id or "", "reason": reason,
            "at": now_utc().isoformat(timespec="microseconds")}


def audit(registry: Registry, name: str, record: dict[str, str]) -> None:
    """The MLflow audit trail, mirrored to GitLab environments when GitLab is configured."""
    from tasks.gitlab_report import mirror_to_environment

    registry.record_event(name, record)
    mirror_to_environment(record["action"])


def active_freeze(spec: ProductionSpec, today: date) -> FreezeWindow | None:
    return next((w for w in spec.freeze if w.covers(today)), None)


def fetch_version(registry: Registry, name: str, version: str, into: Path) -> LocalVersion:
    ref = registry.get_version(name, version)
    if ref is None:
        raise ApprovalError(f"{name} has no version {version}")
    local = Path(registry.download_model(ref.uri, str(into)))
    spec = json.loads(next(local.rglob("feature_spec.json")).read_text())
    booster = next(local.rglob("*.ubj"))
    example_file = local / "input_example.json"
    payload = json.loads(example_file.read_text())
    example = pd.DataFrame(payload["data"], columns=payload["columns"])
    return LocalVersion(local, spec, example, file_sha256(booster))


# -- model server and smoke tests ---------------------------------------------------------
@dataclass
class ModelServer:
    process: subprocess.Popen
    url: str
    log: Path

    def stop(self) -> None:
        terminate(self.process)


def start_model_server(model_uri: str, tracking_uri: str, timeout_s: float, log: Path
                       ) -> ModelServer:
    """Serve one version with MLflow's scoring server on loopback (`mlflow models serve`)."""
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": tracking_uri,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [os.path.join(bin_dir, "mlflow"), "models", "serve", "-m", model_uri,
             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = ModelServer(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise DeployError(f"model server for {model_uri} failed to start "
                              f"(exit {process.returncode}): {tail[0][:200]}")
        try:
            with urllib.request.urlopen(f"{server.url}/ping", timeout=2) as resp:
                if resp.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    server.stop()
    raise DeployError(f"model server for {model_uri} did not answer /ping within {timeout_s:.0f}s")


def _invoke(url: str, frame: pd.DataFrame) -> tuple[list, float]:
    body = ('{"dataframe_split": ' + frame.to_json(orient="split", index=False) + "}").encode()
    request = urllib.request.Request(f"{url}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as resp:
        payload = json.loads(resp.read())
    return payload["predictions"], (time.perf_counter() - start) * 1000


def check_predictions(predictions: list, rows: int, spec: dict) -> list[str]:
    """Shape and range of served predictions for the model's task type."""
    frame = pd.DataFrame(predictions)
    problems = []
    if len(frame) != rows:
        problems.append(f"{len(frame)} predictions for {rows} rows")
    if "prediction" not in frame:
        return [*problems, "no 'prediction' column in the response"]
    if spec["task"] == "regression":
        if not np.isfinite(frame["prediction"].astype(float)).all():
            problems.append("non-finite regression predictions")
        return problems
    unknown = set(frame["prediction"].astype(str)) - set(spec["classes"])
    if unknown:
        problems.append(f"unknown classes predicted: {sorted(unknown)}")
    prob_cols = [c for c in frame if c.startswith("probability")]
    probs = frame[prob_cols].to_numpy(dtype=float)
    if not ((probs >= 0) & (probs <= 1)).all():
        problems.append("probabilities outside [0, 1]")
    if spec["task"] == "multiclass" and not np.allclose(probs.sum(axis=1), 1, atol=1e-4):
        problems.append("class probabilities do not sum to 1")
    return problems


def smoke_test(url: str, local: LocalVersion, smoke: SmokeSpec) -> SmokeReport:
    checks: list[str] = []
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
            checks.append(f"ok: /health answered {resp.status}")
    except (urllib.error.URLError, OSError) as exc:
        return SmokeReport(passed=False, checks=[f"FAIL: /health: {exc}"])
    try:
        predictions, _ = _invoke(url, local.example)
    except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
        return SmokeReport(passed=False, checks=[*checks, f"FAIL: /invocations: {exc}"])
    problems = check_predictions(predictions, len(local.example), local.spec)
    checks += [f"FAIL: {p}" for p in problems] or [
        f"ok: {len(local.example)} predictions with the right shape and range"]
    latencies = [_invoke(url, local.example.iloc[[i % len(local.example)]])[1]
                 for i in range(smoke.latency_requests)]
    p95 = float(np.percentile(latencies, 95))
    verdict = "ok" if p95 <= smoke.max_latency_ms else "FAIL"
    checks.append(f"{verdict}: p95 latency {p95:.1f} ms over {len(latencies)} single-row "
                  f"requests (budget {smoke.max_latency_ms:g} ms)")
    return SmokeReport(passed=not any(c.startswith("FAIL") for c in checks), checks=checks,
                       p95_ms=p95)


ServerFactory = Callable[[str, str, float, Path], ModelServer]


def deploy_staging(registry: Registry, cfg: ModelConfig, version: str, actor: str,
                   flow_run_id: str | None = None,
                   server_factory: ServerFactory | None = None) -> SmokeReport:
    """Move the staging alias, serve the version, smoke-test it; on failure restore the alias."""
    server_factory = server_factory or start_model_server
    alias = cfg.deploy.staging.alias
    previous = registry.alias_version(cfg.name, alias)
    with tempfile.TemporaryDirectory(prefix="mlops-staging-") as tmp:
        local = fetch_version(registry, cfg.name, version, Path(tmp))
        registry.move_alias(cfg.name, alias, version)
        try:
            server = server_factory(registry.serving_uri(cfg.name, version, local.path),
                                    registry.uri,
                                    cfg.deploy.staging.smoke.startup_timeout_s,
                                    Path(tmp) / "server.log")
            try:
                report = smoke_test(server.url, local, cfg.deploy.staging.smoke)
            finally:
                server.stop()
            if not report.passed:
                raise DeployError(f"{cfg.name} v{version} smoke test failed: "
                                  + "; ".join(f.removeprefix("FAIL: ") for f in report.failures))
        except DeployError as exc:
            registry.move_alias(cfg.name, alias, previous)
            audit(registry, cfg.name, event("staging-failed", "staging", previous, version,
                                                  actor, flow_run_id=flow_run_id,
                                                  reason=str(exc)))
            raise
    audit(registry, cfg.name, event("staged", "staging", previous, version, actor,
                                          flow_run_id=flow_run_id,
                                          reason="; ".join(report.checks)))
    return report


# -- production -----------------------------------------------------------------------------
def check_approver(cfg: ModelConfig, approver: str) -> None:
    if not approver.strip():
        raise ApprovalError("an approver name is required")
    if not cfg.deploy.production.may_approve(approver):
        allowed = ", ".join(cfg.deploy.production.approvers or [])
        raise ApprovalError(f"{approver} may not approve {cfg.name} (approvers: {allowed})")


def post_deploy_checks(registry: Registry, cfg: ModelConfig, version: str) -> None:
    """The alias resolves to the version, the artifact is intact, and it predicts."""
    import mlflow

    alias = cfg.deploy.production.alias
    resolved = registry.alias_version(cfg.name, alias)
    if resolved != version:
        raise DeployError(f"{cfg.name}@{alias} resolves to v{resolved}, expected v{version}")
    ref = registry.get_version(cfg.name, version)
    with tempfile.TemporaryDirectory(prefix="mlops-check-") as tmp:
        local = fetch_version(registry, cfg.name, version, Path(tmp))
        expected = (ref.tags if ref else {}).get("artifact_sha256")
        if expected and expected != local.booster_sha256:
            raise DeployError(f"{cfg.name} v{version} artifact SHA-256 does not match its tag")
        model = mlflow.pyfunc.load_model(str(local.path))
        predictions = model.predict(local.example)
        problems = check_predictions(predictions.to_dict(orient="records"), len(local.example),
                                     local.spec)
        if problems:
            raise DeployError(f"{cfg.name} v{version} post-deploy check: {problems[0]}")


Checks = Callable[[Registry, ModelConfig, str], None]


def promote(registry: Registry, cfg: ModelConfig, version: str, approver: str, comment: str = "",
            flow_run_id: str | None = None, today: date | None = None,
            checks: Checks | None = None) -> str | None:
    """Move the champion alias after the freeze check; roll back if the checks fail.

    Returns the previous champion version.
    """
    spec = cfg.deploy.production
    if registry.get_version(cfg.name, version) is None:
        raise ApprovalError(f"{cfg.name} has no version {version}")
    previous = registry.alias_version(cfg.name, spec.alias)
    window = active_freeze(spec, today or now_utc().date())
    if window is not None:
        reason = (f"freeze window {window.start}..{window.end}"
                  + (f" ({window.reason})" if window.reason else ""))
        audit(registry, cfg.name, event("promotion-refused", "production", previous,
                                              version, approver, comment, flow_run_id, reason))
        raise DeployError(f"promotion of {cfg.name} v{version} refused: {reason}")
    registry.move_alias(cfg.name, spec.alias, version)
    audit(registry, cfg.name, event("promoted", "production", previous, version, approver,
                                          comment, flow_run_id))
    try:
        (checks or post_deploy_checks)(registry, cfg, version)
    except Exception as exc:
        registry.move_alias(cfg.name, spec.alias, previous)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        audit(registry, cfg.name, event("rolled-back", "production", version, previous,
                                              "automatic", "post-deploy check failed",
                                              flow_run_id, reason))
        back = f"v{previous}" if previous else "no champion"
        raise DeployError(f"{cfg.name} v{version} failed its post-deploy checks ({reason}); "
                          f"rolled back to {back}") from None
    return previous


def reject(registry: Registry, cfg: ModelConfig, version: str, approver: str, comment: str,
           flow_run_id: str | None, reason: str = "rejected") -> None:
    current = registry.alias_version(cfg.name, cfg.deploy.production.alias)
    audit(registry, cfg.name, event("approval-" + reason, "production", current, version,
                                          approver, comment, flow_run_id))


def rollback(registry: Registry, cfg: ModelConfig, actor: str, to_version: str | None = None,
             comment: str = "") -> tuple[str, str | None]:
    """Point the champion back to `to_version`, or to what it was before the current one's
    promotion; when the current champion was the first, the alias is removed."""
    alias = cfg.deploy.production.alias
    current = registry.alias_version(cfg.name, alias)
    if current is None:
        raise DeployError(f"{cfg.name} has no {alias} to roll back")
    if to_version:
        target: str | None = to_version
        if registry.get_version(cfg.name, to_version) is None:
            raise ApprovalError(f"{cfg.name} has no version {to_version}")
    else:
        found, target = previous_champion(registry.events(cfg.name), current)
        if not found:
            raise DeployError(f"no promotion of {cfg.name} v{current} is recorded; "
                              "name a version with --to")
    registry.move_alias(cfg.name, alias, target)
    audit(registry, cfg.name, event("rolled-back", "production", current, target, actor,
                                          comment or "manual rollback"))
    return current, target


def previous_champion(events: list[dict[str, str]], current: str) -> tuple[bool, str | None]:
    """(found, version) the current champion replaced, from the newest promotion to it;
    version None means it was the first champion."""
    for record in reversed(sorted(events, key=lambda e: e.get("at", ""))):
        if (record.get("action") == "promoted" and record.get("environment") == "production"
                and record.get("to_version") == current):
            return True, record.get("from_version") or None
    return False, None


# -- approval -------------------------------------------------------------------------------
class Approval(BaseModel):
    approver: str
    approved: bool
    comment: str = ""


def approval_report(registry: Registry, cfg: ModelConfig, version: str, staging: SmokeReport
                    ) -> str:
    """What an approver reads: metrics vs champion, gate, validation, smoke tests, links."""
    ref = registry.get_version(cfg.name, version)
    tags = ref.tags if ref else {}
    run = registry.client.get_run(ref.run_id) if ref and ref.run_id else None
    metrics = run.data.metrics if run else {}
    champion = registry.alias_version(cfg.name, cfg.deploy.production.alias)
    lines = [f"## Promote {cfg.name} v{version} to production?", "",
             f"Current champion: {'v' + champion if champion else 'none'}. "
             f"Gate: {tags.get('gate_metric', '?')} = {tags.get('gate_value', '?')} (passed).", "",
             "| metric | candidate | champion |", "|---|---|---|"]
    for key in sorted(k for k in metrics if k.startswith("test_")):
        name = key.removeprefix("test_")
        old = metrics.get(f"champion_{name}")
        lines.append(f"| {name} | {metrics[key]:.4f} | {'' if old is None else f'{old:.4f}'} |")
    if run:
        params = run.data.params
        lines += ["", f"Validation: {params.get('rows', '?')} rows, "
                      f"{params.get('features', '?')} features, report in the MLflow run.",
                  f"MLflow run: {registry.run_url(run.info.run_id)}"]
    lines += ["", "Staging smoke tests:", *[f"- {c}" for c in staging.checks],
              "", f"Data fingerprint `{tags.get('data_fingerprint', '?')[:16]}`, "
                  f"commit `{tags.get('git_commit', '?')[:12]}`."]
    if cfg.deploy.production.approvers:
        lines.append(f"Approvers: {', '.join(cfg.deploy.production.approvers)}.")
    return "\n".join(lines)


def wait_for_approval(cfg: ModelConfig, report: str, poll_interval_s: int = 2) -> Approval:
    """Pause the current flow run with an approval form; the Prefect UI or `mlops approve`
    resumes it. Raises TimeoutError when nobody answers within approval_timeout_h."""
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run
    from prefect.input import RunInput

    class ApprovalInput(RunInput):
        approver: str
        approve: bool = False
        comment: str = ""

    form = ApprovalInput.with_initial_data(description=report, approver="", approve=False)
    try:
        answer = pause_flow_run(wait_for_input=form,
                                timeout=int(cfg.deploy.production.approval_timeout_h * 3600),
                                poll_interval=poll_interval_s)
    except FlowPauseTimeout:
        raise TimeoutError(f"no approval within {cfg.deploy.production.approval_timeout_h:g} h") \
            from None
    return Approval(approver=answer.approver, approved=answer.approve, comment=answer.comment)
