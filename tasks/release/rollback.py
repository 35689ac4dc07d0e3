"""Rollback by hand: the champion alias back to the version it replaced (or a named one)."""

from __future__ import annotations

from tasks.adapters.gitlab import open_gitlab
from tasks.adapters.mlflow_registry import Registry
from tasks.core.config import ModelConfig
from tasks.core.errors import DeployError
from tasks.release.audit import AuditTrail, event, previous_champion


def rollback(registry: Registry, cfg: ModelConfig, actor: str, to_version: str | None = None,
             comment: str = "") -> tuple[str, str | None]:
    """Point the champion back to `to_version`, or to what it was before the current one's
    promotion; when the current champion was the first, the alias is removed."""
    alias = cfg.deploy.production.alias
    trail = AuditTrail(registry, cfg.name, open_gitlab())
    current = registry.alias_version(cfg.name, alias)
    if current is None:
        raise DeployError(f"{cfg.name} has no {alias} to roll back")
    if to_version:
        target: str | None = to_version
        registry.require_version(cfg.name, to_version)
    else:
        found, target = previous_champion(trail.events(), current)
        if not found:
            raise DeployError(f"no promotion of {cfg.name} v{current} is recorded; "
                              "name a version with --to")
    registry.move_alias(cfg.name, alias, target)
    trail.write(event("rolled-back", "production", current, target, actor,
                      comment or "manual rollback"))
    return current, target
