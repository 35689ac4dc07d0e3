"""Staging: move the staging alias, serve the verified version, smoke-test it; on failure the
alias goes back. Both outcomes go to the audit trail; a run that staged a version already (a
resumed deploy run replays its start) does not stage it again."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

from tasks.adapters.audit_trail import AuditTrail, event
from tasks.adapters.gitlab import open_gitlab_quietly
from tasks.adapters.mlflow_registry import Registry
from tasks.contracts.release import SmokeReport
from tasks.core.audit_event import Action
from tasks.core.chain import Key
from tasks.core.config import ModelConfig
from tasks.core.errors import DeployError, PolicyRefused
from tasks.core.policy_config import LoadedPolicy, deployment_refusal
from tasks.core.settings import Settings
from tasks.core.steps import step
from tasks.release.guard import alias_as_recorded, sealed_facts
from tasks.release.serving import ServerFactory, smoke_test, start_model_server


def deploy_staging(registry: Registry, cfg: ModelConfig, version: str, actor: str,
                   flow_run_id: str | None = None, server_factory: ServerFactory | None = None,
                   env: Mapping[str, str] | None = None, *, settings: Settings,
                   policy: LoadedPolicy, key: Key) -> SmokeReport:
    """Serve the downloaded, verified copy of the version (what production will load) and
    smoke-test it with its own input example; the staging alias points at it if it passes.
    The run's policy rules on it; its key signs the records."""
    server_factory = server_factory or start_model_server
    trail = AuditTrail(registry, cfg.name, open_gitlab_quietly(settings.gitlab),
                       settings=settings, key=key)
    alias = cfg.deploy.staging.alias
    done = _staged_by(trail.events(), version, flow_run_id)
    if done is not None:
        return SmokeReport(passed=True, checks=[f"ok: staged by this run at {done['at'][:19]}"])
    events = trail.events()
    previous = alias_as_recorded(registry, cfg.name, alias, events)
    facts, unusable = sealed_facts(cfg.name, version,
                                   registry.require_version(cfg.name, version).tags, events)
    ruled = unusable or deployment_refusal(policy, "staging", version, facts or {}, events)
    if ruled:
        trail.write(event(Action.PROMOTION_REFUSED, "staging", previous, version, actor,
                          flow_run_id=flow_run_id, reason=ruled, alias=alias))
        raise PolicyRefused(f"staging of {cfg.name} v{version} refused: {ruled}")
    with tempfile.TemporaryDirectory(prefix="mlops-staging-") as tmp:
        digest = registry.require_manifest(cfg.name, version)
        local = registry.download_version(cfg.name, version, Path(tmp), require_manifest=True)
        registry.move_alias(cfg.name, alias, version)
        try:
            server = server_factory(str(local.path), cfg.deploy.staging.smoke.startup_timeout_s,
                                    Path(tmp) / "server.log", env or {})
            try:
                report = smoke_test(server.url, local, cfg.deploy.staging.smoke)
            finally:
                server.stop()
            if not report.passed:
                raise DeployError(f"{cfg.name} v{version} smoke test failed: "
                                  + "; ".join(f.removeprefix("FAIL: ") for f in report.failures))
        except DeployError as exc:
            registry.move_alias(cfg.name, alias, previous)
            trail.write(event(Action.STAGING_FAILED, "staging", previous, version, actor,
                              flow_run_id=flow_run_id, reason=str(exc)))
            raise
    trail.write(event(Action.STAGED, "staging", previous, version, actor, flow_run_id=flow_run_id,
                      reason="; ".join(report.checks), alias=alias, digest=digest))
    return report


def _staged_by(events: list[dict[str, str]], version: str, flow_run_id: str | None
               ) -> dict[str, str] | None:
    if not flow_run_id:
        return None
    return next((r for r in reversed(events) if r.get("action") == Action.STAGED
                 and r.get("to_version") == version and r.get("flow_run_id") == flow_run_id),
                None)


@step("deploy-staging")
def staging(registry: Registry, cfg: ModelConfig, version: str, actor: str,
            env: Mapping[str, str], settings: Settings, policy: LoadedPolicy, key: Key
            ) -> SmokeReport:
    from prefect.logging import get_run_logger
    from prefect.runtime import flow_run

    report = deploy_staging(registry, cfg, version, actor, flow_run.get_id(), env=env,
                            settings=settings, policy=policy, key=key)
    for check in report.checks:
        get_run_logger().info("smoke %s", check)
    return report
