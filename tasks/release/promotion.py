"""Production: move the champion alias outside freeze windows, check the live version, roll back
automatically when a check fails. Every outcome goes to the audit trail."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

from tasks.adapters.gitlab import open_gitlab
from tasks.adapters.mlflow_registry import Registry
from tasks.contracts.release import Approval
from tasks.core.config import FreezeWindow, ModelConfig, ProductionSpec
from tasks.core.errors import DeployError
from tasks.core.steps import step
from tasks.release.audit import AuditTrail, event, now_utc
from tasks.release.serving import check_predictions

Checks = Callable[[Registry, ModelConfig, str], None]


def active_freeze(spec: ProductionSpec, today: date) -> FreezeWindow | None:
    return next((w for w in spec.freeze if w.covers(today)), None)


def post_deploy_checks(registry: Registry, cfg: ModelConfig, version: str) -> None:
    """The alias resolves to the version, its files are intact, and it predicts."""
    alias = cfg.deploy.production.alias
    resolved = registry.alias_version(cfg.name, alias)
    if resolved != version:
        raise DeployError(f"{cfg.name}@{alias} resolves to v{resolved}, expected v{version}")
    with tempfile.TemporaryDirectory(prefix="mlops-check-") as tmp:
        local = registry.download_version(cfg.name, version, Path(tmp))
        model = registry.load_pyfunc(local.path)
        problems = check_predictions(model.predict(local.example), len(local.example),
                                     local.spec)
        if problems:
            raise DeployError(f"{cfg.name} v{version} post-deploy check: {problems[0]}")


def promote(registry: Registry, cfg: ModelConfig, version: str, approver: str, comment: str = "",
            flow_run_id: str | None = None, today: date | None = None,
            checks: Checks | None = None) -> str | None:
    """Move the champion alias after the freeze check; roll back if the checks fail.

    Returns the previous champion version.
    """
    spec = cfg.deploy.production
    registry.require_version(cfg.name, version)
    trail = AuditTrail(registry, cfg.name, open_gitlab())
    previous = registry.alias_version(cfg.name, spec.alias)
    window = active_freeze(spec, today or now_utc().date())
    if window is not None:
        reason = (f"freeze window {window.start}..{window.end}"
                  + (f" ({window.reason})" if window.reason else ""))
        trail.write(event("promotion-refused", "production", previous, version, approver,
                          comment, flow_run_id, reason))
        raise DeployError(f"promotion of {cfg.name} v{version} refused: {reason}")
    registry.move_alias(cfg.name, spec.alias, version)
    trail.write(event("promoted", "production", previous, version, approver, comment,
                      flow_run_id))
    try:
        (checks or post_deploy_checks)(registry, cfg, version)
    except Exception as exc:
        registry.move_alias(cfg.name, spec.alias, previous)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        trail.write(event("rolled-back", "production", version, previous, "automatic",
                          "post-deploy check failed", flow_run_id, reason))
        back = f"v{previous}" if previous else "no champion"
        raise DeployError(f"{cfg.name} v{version} failed its post-deploy checks ({reason}); "
                          f"rolled back to {back}") from None
    return previous


@step("promote-production")
def production(registry: Registry, cfg: ModelConfig, version: str, approval: Approval) -> str:
    from prefect.runtime import flow_run

    previous = promote(registry, cfg, version, approval.approver, approval.comment,
                       flow_run.get_id())
    return previous or ""
