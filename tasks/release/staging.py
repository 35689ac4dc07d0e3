"""Staging: move the staging alias, serve the verified version, smoke-test it; on failure the
alias goes back. Both outcomes go to the audit trail."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

from tasks.adapters.gitlab import open_gitlab
from tasks.adapters.mlflow_registry import Registry
from tasks.contracts.release import SmokeReport
from tasks.core.config import ModelConfig
from tasks.core.errors import DeployError
from tasks.core.steps import step
from tasks.release.audit import AuditTrail, event
from tasks.release.serving import ServerFactory, smoke_test, start_model_server


def deploy_staging(registry: Registry, cfg: ModelConfig, version: str, actor: str,
                   flow_run_id: str | None = None, server_factory: ServerFactory | None = None,
                   env: Mapping[str, str] | None = None) -> SmokeReport:
    """Serve the downloaded, verified copy of the version (what production will load) and
    smoke-test it with its own input example; the staging alias points at it if it passes."""
    server_factory = server_factory or start_model_server
    trail = AuditTrail(registry, cfg.name, open_gitlab())
    alias = cfg.deploy.staging.alias
    previous = registry.alias_version(cfg.name, alias)
    with tempfile.TemporaryDirectory(prefix="mlops-staging-") as tmp:
        local = registry.download_version(cfg.name, version, Path(tmp))
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
            trail.write(event("staging-failed", "staging", previous, version, actor,
                              flow_run_id=flow_run_id, reason=str(exc)))
            raise
    trail.write(event("staged", "staging", previous, version, actor, flow_run_id=flow_run_id,
                      reason="; ".join(report.checks)))
    return report


@step("deploy-staging")
def staging(registry: Registry, cfg: ModelConfig, version: str, actor: str,
            env: Mapping[str, str]) -> SmokeReport:
    from prefect.logging import get_run_logger
    from prefect.runtime import flow_run

    report = deploy_staging(registry, cfg, version, actor, flow_run.get_id(), env=env)
    for check in report.checks:
        get_run_logger().info("smoke %s", check)
    return report
