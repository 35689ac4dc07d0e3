"""The audit trail: one record per release decision (staged, promoted, refused, rejected, rolled
back), kept in the registry and mirrored to GitLab environments when GitLab is configured."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Protocol

from tasks.adapters.mlflow_registry import Registry

log = logging.getLogger("mlops.audit")
# audit actions that change what an environment runs, as GitLab deployments (environment, status)
ENVIRONMENT_ACTIONS = {"staged": ("staging", "success"), "staging-failed": ("staging", "failed"),
                       "promoted": ("production", "success"),
                       "rolled-back": ("production", "success")}


class EnvironmentMirror(Protocol):
    """What the audit trail needs of GitLab (tasks.adapters.gitlab.GitLab has it): the
    pipeline's commit and ref (`settings.sha`, `settings.ref`) and a way to record a deployment."""

    settings: Any

    def record_deployment(self, environment: str, status: str, sha: str, ref: str) -> object: ...


def now_utc() -> datetime:
    return datetime.now(UTC)


def event(action: str, environment: str, from_version: str | None, to_version: str | None,
          actor: str, comment: str = "", flow_run_id: str | None = None, reason: str = ""
          ) -> dict[str, str]:
    return {"action": action, "environment": environment, "from_version": from_version or "",
            "to_version": to_version or "", "actor": actor, "comment": comment,
            "flow_run_id": flow_run_id or "", "reason": reason,
            "at": now_utc().isoformat(timespec="microseconds")}


class AuditTrail:
    """Where one model's release records go: the registry, and GitLab environments (a GitLab
    deployment per change of what staging or production runs) when a mirror is given."""

    def __init__(self, registry: Registry, model: str, mirror: EnvironmentMirror | None = None):
        self.registry = registry
        self.model = model
        self.mirror = mirror

    def write(self, record: dict[str, str]) -> None:
        self.registry.record_event(self.model, record)
        self._mirror(record["action"])

    def _mirror(self, action: str) -> str | None:
        if self.mirror is None or action not in ENVIRONMENT_ACTIONS:
            return None
        sha, ref = self.mirror.settings.sha, self.mirror.settings.ref
        if not (sha and ref):
            log.info("GitLab deployment skipped: CI_COMMIT_SHA / CI_COMMIT_REF_NAME not set")
            return None
        environment, status = ENVIRONMENT_ACTIONS[action]
        made = self.mirror.record_deployment(environment, status, sha, ref)
        return environment if made else None

    def events(self) -> list[dict[str, str]]:
        return self.registry.events(self.model)


def previous_champion(events: list[dict[str, str]], current: str) -> tuple[bool, str | None]:
    """(found, version) the current champion replaced, from the newest promotion to it;
    version None means it was the first champion."""
    for record in reversed(sorted(events, key=lambda e: e.get("at", ""))):
        if (record.get("action") == "promoted" and record.get("environment") == "production"
                and record.get("to_version") == current):
            return True, record.get("from_version") or None
    return False, None
