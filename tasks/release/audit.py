"""The audit trail: one record per release decision (staged, approval asked and answered,
promotion intent and completion, refusals, rollbacks), hash-chained (and signed when an audit key
is set) so a removed, altered or reordered record shows; mirrored to GitLab environments when
GitLab is configured."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

from tasks.adapters import audit_store
from tasks.adapters.audit_store import former_champions  # noqa: F401 (release's helpers)
from tasks.adapters.mlflow_registry import Registry
from tasks.core import chain
from tasks.core.errors import RegistryError

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
          actor: str, comment: str = "", flow_run_id: str | None = None, reason: str = "",
          **extra: str) -> dict[str, str]:
    """A record before it is sealed (sequence, time and hashes are added by the trail)."""
    return {"action": action, "environment": environment, "from_version": from_version or "",
            "to_version": to_version or "", "actor": actor, "comment": comment,
            "flow_run_id": flow_run_id or "", "reason": reason, **extra}


class AuditTrail:
    """One model's records in the registry, written one at a time under the model's lock."""

    def __init__(self, registry: Registry, model: str, mirror: EnvironmentMirror | None = None,
                 key: bytes | None = None):
        self.registry = registry
        self.model = model
        self.mirror = mirror
        self.key = key

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the model's lock (promotion, rollback): nobody else writes meanwhile."""
        with audit_store.model_lock(self.registry, self.model):
            yield

    def write(self, record: dict[str, str]) -> dict[str, str]:
        """Seal and store the record after the newest one (deleted ones included), then mirror it."""
        limit = self.registry.max_param_chars
        body = {k: v[:limit] for k, v in record.items() if v not in (None, "")}
        with self.locked():
            stored = audit_store.read(self.registry, self.model)
            if stored is None:
                raise RegistryError(f"the audit trail of {self.model} (experiment audit/"
                                    f"{self.model}) was deleted: restore it before any release")
            broken = chain.problems(stored, self.key)
            if broken:
                raise RegistryError(
                    f"the audit trail of {self.model} is not intact ({broken[0]}): nothing was "
                    f"changed; see `mlops audit verify {self.model}` (restore a deleted record "
                    "with `mlflow runs restore`, remove a forged one for good with `mlflow gc`)")
            last = max((r for r in stored if not chain.legacy(r)),
                       key=lambda r: chain.seq_of(r) or 0, default=None)
            at = now_utc()
            if last and (chain.time_of(last.get("at")) or at) > at:
                at = chain.time_of(last["at"])  # never before the record it follows
            sealed = chain.seal({**body, "model": self.model,
                                 "seq": str((chain.seq_of(last) or 0) + 1 if last else 1),
                                 "prev_hash": last["hash"] if last else chain.GENESIS,
                                 "at": at.isoformat(timespec="microseconds")}, self.key)
            audit_store.append(self.registry, self.model, sealed)
        self._mirror(sealed["action"])
        return sealed

    def _mirror(self, action: str) -> None:
        """A GitLab deployment per environment change; a failure here is a warning only."""
        if self.mirror is None or action not in ENVIRONMENT_ACTIONS:
            return
        try:
            sha, ref = self.mirror.settings.sha, self.mirror.settings.ref
            if not (sha and ref):
                log.info("GitLab deployment skipped: CI_COMMIT_SHA / CI_COMMIT_REF_NAME not set")
                return
            environment, status = ENVIRONMENT_ACTIONS[action]
            self.mirror.record_deployment(environment, status, sha, ref)
        except Exception as exc:  # the record is written; GitLab is a mirror, never a gate
            log.warning("GitLab deployment for %s not recorded: %s", action, type(exc).__name__)

    def records(self) -> list[dict[str, str]]:
        """Every stored record in chain order (deleted ones marked), [] without a trail."""
        stored = audit_store.read(self.registry, self.model) or []
        return sorted(stored, key=lambda r: chain.seq_of(r) or 0)

    def events(self) -> list[dict[str, str]]:
        """The records that count: in chain order, up to the first break in the chain."""
        return [dict(r) for r in chain.intact(self.records(), self.key)]

    def problems(self, aliases: dict[str, str | None] | None = None) -> list[str]:
        """What `mlops audit verify` reports: chain breaks, then live aliases the chain does not
        explain, then unfinished promotions."""
        stored = audit_store.read(self.registry, self.model)
        if stored is None:
            return [f"the audit trail of {self.model} (experiment audit/{self.model}) was deleted"]
        found = chain.problems(stored, self.key)
        events = self.events()
        for alias, live in (aliases or {}).items():
            expected = audit_store.alias_from(events, alias)
            if live != expected:
                found.append(f"@{alias} points at {_v(live)} but the trail says {_v(expected)}: "
                             "moved outside the pipeline")
        pending = unfinished(events)
        if pending:
            found.append(f"promotion of v{pending['to_version']} (record {pending['seq']}) was "
                         "started but not finished")
        return found


def _v(version: str | None) -> str:
    return f"v{version}" if version else "nothing"


def unfinished(events: list[dict[str, str]]) -> dict[str, str] | None:
    """The newest promotion or rollback intent that no completion followed, if any."""
    for record in reversed(events):
        action = record.get("action", "")
        if action.endswith("-intent"):
            return record
        if action in ("promoted", "rolled-back", "promotion-abandoned"):
            return None
    return None


def previous_champion(events: list[dict[str, str]], current: str, alias: str
                      ) -> tuple[bool, str | None]:
    """(found, version) the current champion replaced, from the newest promotion to it; version
    None means it was the first champion. Chain order, never timestamps."""
    for record in reversed(events):
        if (record.get("action") == "promoted" and record.get("alias", alias) == alias
                and record.get("to_version") == current):
            return True, record.get("from_version") or None
    return False, None


def staged_digest(events: list[dict[str, str]], version: str) -> str | None:
    """The artifact digest the newest passed staging of `version` checked, if it was staged."""
    for record in reversed(events):
        if record.get("action") == "staged" and record.get("to_version") == version:
            return record.get("digest", "")
    return None
