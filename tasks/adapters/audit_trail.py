"""The audit trail: one record per release decision (staged, approval asked and answered,
promotion intent and completion, refusals, rollbacks), hash-chained, signed with a key derived
per model when an audit key is set, and its head anchored outside the MLflow store
(tasks/adapters/audit_anchor.py), so a removed, altered, reordered, cut off, replaced or copied
record shows; mirrored to GitLab environments when GitLab is configured."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from tasks.adapters import audit_anchor, audit_store
from tasks.adapters.mlflow_registry import Registry
from tasks.core import chain, tombstone
from tasks.core.audit_event import INTENT, Action, AuditEvent
from tasks.core.errors import ConfigError, RegistryError
from tasks.core.settings import Settings

log = logging.getLogger("mlops.audit")
# audit actions that change what an environment runs, as GitLab deployments (environment, status)
ENVIRONMENT_ACTIONS = {Action.STAGED: ("staging", "success"),
                       Action.STAGING_FAILED: ("staging", "failed"),
                       Action.PROMOTED: ("production", "success"),
                       Action.ROLLED_BACK: ("production", "success")}
# what moves production: never written unsigned while signed records are required
PRODUCTION_ACTIONS = (Action.PROMOTION_INTENT, Action.PROMOTED, Action.ROLLBACK_INTENT,
                      Action.ROLLED_BACK)
# records this much older than their experiment were copied there (writers' clocks may differ)
REPLAY_MARGIN = timedelta(hours=1)
NO_KEY = ("set MLOPS_AUDIT_KEY (or MLOPS_AUDIT_KEY_BLOCK): {what} needs signed audit records; "
          "nothing was changed")


class EnvironmentMirror(Protocol):
    """What the audit trail needs of GitLab (tasks.adapters.gitlab.GitLab has it): the
    pipeline's commit and ref (`settings.sha`, `settings.ref`) and a way to record a deployment."""

    settings: Any

    def record_deployment(self, environment: str, status: str, sha: str, ref: str) -> object: ...


def now_utc() -> datetime:
    return datetime.now(UTC)


def event(action: Action, environment: str, from_version: str | None, to_version: str | None,
          actor: str, comment: str = "", flow_run_id: str | None = None, reason: str = "",
          **extra: str) -> AuditEvent:
    """A record before it is sealed (sequence, time and hashes are added by the trail)."""
    return AuditEvent(action=action, environment=environment, from_version=from_version,
                      to_version=to_version, actor=actor, comment=comment,
                      flow_run_id=flow_run_id, reason=reason, extra=extra)


class AuditTrail:
    """One model's records in the registry, written one at a time under the model's lock, signed
    with the key the caller read (None: unsigned) and anchored where the caller's settings say (a
    file under MLOPS_HOME, a variable on their Prefect server), or on the `anchors` given;
    `require_key` refuses a production change (PRODUCTION_ACTIONS) without a key."""

    def __init__(self, registry: Registry, model: str, mirror: EnvironmentMirror | None = None,
                 *, key: chain.Key, settings: Settings | None = None,
                 anchors: Sequence[audit_anchor.Anchor] | None = None, require_key: bool = True):
        if anchors is not None:
            self.anchors = list(anchors)
        elif settings is not None:
            self.anchors = audit_anchor.anchors(settings.home, settings.prefect_api_url, model,
                                                registry.uri)
        else:
            raise TypeError("AuditTrail needs the settings (where its anchors are) or anchors")
        self.registry = registry
        self.model = model
        self.mirror = mirror
        self.key = chain.keyring(key)
        self.require_key = require_key
        self.store = audit_anchor.store_id(registry.uri)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the model's lock (promotion, rollback): nobody else writes meanwhile."""
        with audit_store.model_lock(self.registry, self.model):
            yield

    def write(self, event: AuditEvent) -> dict[str, str]:
        """Seal and store the event's record after the newest one (deleted ones included),
        anchor the new head, then mirror it."""
        if self.require_key and self.key is None and event.action in PRODUCTION_ACTIONS:
            raise ConfigError(NO_KEY.format(what=f"a production change of {self.model}"))
        limit = self.registry.max_param_chars
        body = {k: v[:limit] for k, v in event.record().items() if v not in (None, "")}
        with self.locked():
            stored = self._stored()
            self._require_writable(stored)
            last = max((r for r in stored if not chain.legacy(r)),
                       key=lambda r: chain.seq_of(r) or 0, default=None)
            sealed = chain.seal({**body, "model": self.model,
                                 "seq": str((chain.seq_of(last) or 0) + 1 if last else 1),
                                 "prev_hash": last["hash"] if last else chain.GENESIS,
                                 "at": self._at(last)}, self.key)
            self._append(stored, sealed)
        self._mirror(event.action)
        return sealed

    def require_writable(self) -> None:
        """Refuse now what a write would refuse later (before a registration creates anything)."""
        self._require_writable(self._stored())

    def _require_writable(self, stored: list[dict[str, str]]) -> None:
        broken = self._broken(stored)
        if broken:
            raise RegistryError(
                f"the audit trail of {self.model} is not intact ({broken[0]}): nothing was "
                f"changed; see `mlops audit verify {self.model}` (restore a deleted record "
                "with `mlflow runs restore`; for anything else the key holder runs "
                f"`mlops audit repair {self.model} --reason TEXT`, which writes a signed "
                "tombstone)")
        if self.key is None and any(r.get("hmac") for r in stored):
            raise ConfigError(NO_KEY.format(what=f"a record in the signed audit trail of "
                                                 f"{self.model} (unsigned, it would break it)"))

    def repair(self, reason: str, actor: str) -> dict[str, str]:
        """Write the signed tombstone that voids the records which cannot stand and declares
        the lost ones, so the chain verifies again; never deletes anything."""
        if self.key is None:
            raise ConfigError(NO_KEY.format(what="a repair of the audit trail"))
        with self.locked():
            stored = self._stored()
            anchored = [chain.seq_of(a) or 0 for a in self.anchor_heads().values() if a]
            plan = tombstone.plan(stored, self.key, self.model, anchored)
            if plan is None and not self._replayed(stored):
                raise RegistryError(f"nothing to repair in the audit trail of {self.model}: "
                                    "no record to void and none lost")
            plan = plan or tombstone.Plan((), (), max(anchored + [chain.seq_of(r) or 0
                                                                 for r in stored]) + 1,
                                          self._newest_hash(stored))
            newest = max((r for r in stored if r.get("hash") == plan.prev_hash), default=None,
                         key=lambda r: chain.seq_of(r) or 0)
            sealed = chain.seal({**plan.record(reason, actor), "model": self.model,
                                 "at": self._at(newest)}, self.key)
            still = self._broken([*stored, sealed])
            if still:
                raise RegistryError(f"a tombstone cannot repair the audit trail of {self.model}:"
                                    f" {still[0]}; nothing was written")
            self._append(stored, sealed)
        return sealed

    def _stored(self) -> list[dict[str, str]]:
        stored = audit_store.read(self.registry, self.model)
        if stored is None:
            raise RegistryError(f"the audit trail of {self.model} (experiment audit/"
                                f"{self.model}) was deleted: restore it before any release")
        return stored

    def _append(self, stored: list[dict[str, str]], sealed: dict[str, str]) -> None:
        """Store the record, then move every anchor to it (an anchor that cannot be written
        lags behind, which hides nothing that it saw)."""
        audit_store.append(self.registry, self.model, sealed)
        head = chain.head([*stored, sealed], self.model, self.store, self.key)
        if head is None:  # never: the record just stored has a sequence number
            return
        for anchor in self.anchors:
            try:
                anchor.write(head)
            except Exception as exc:
                log.warning("audit anchor (%s) not moved to record %s: %s", anchor.where,
                            sealed["seq"], type(exc).__name__)

    @staticmethod
    def _at(last: dict[str, str] | None) -> str:
        at = now_utc()
        before = chain.time_of(last.get("at")) if last else None
        if before is not None and before > at:
            at = before  # never before the record it follows
        return at.isoformat(timespec="microseconds")

    @staticmethod
    def _newest_hash(stored: list[dict[str, str]]) -> str:
        newest = max((r for r in stored if chain.seq_of(r) is not None), default=None,
                     key=lambda r: chain.seq_of(r) or 0)
        return newest["hash"] if newest else chain.GENESIS

    def anchor_heads(self) -> dict[str, dict[str, str] | None]:
        """What each reachable anchor holds, by where it is."""
        return {anchor.where: anchor.read() for anchor in self.anchors}

    def _replayed(self, stored: list[dict[str, str]]) -> str | None:
        """Records older than the experiment holding them were copied there (a signed prefix
        in a fresh audit/<model>), unless a tombstone written after the copy accepted them."""
        created = audit_store.created(self.registry, self.model)
        times = [chain.time_of(r.get("at")) for r in stored if chain.seq_of(r) is not None]
        first = min((t for t in times if t is not None), default=None)
        if created is None or first is None or created <= first + REPLAY_MARGIN:
            return None
        if any(r.get("action") == chain.TOMBSTONE and (chain.time_of(r.get("at")) or first)
               >= created for r in chain.intact(stored, self.key, self.model)):
            return None
        return (f"prefix replay: audit/{self.model} was created at {created:%Y-%m-%d %H:%M:%S} "
                f"UTC, after the records it holds (the first dated {first:%Y-%m-%d %H:%M:%S}): "
                "they were copied into a fresh experiment")

    def _broken(self, stored: list[dict[str, str]]) -> list[str]:
        """Chain breaks (cross-model records included), then disagreements with the anchors,
        then a replayed copy."""
        found = chain.problems(stored, self.key, model=self.model)
        for where, anchor in self.anchor_heads().items():
            found += [f"{p} ({where})" for p in chain.anchor_problems(
                stored, anchor, self.model, self.store, self.key)]
        replayed = self._replayed(stored)
        return found + ([replayed] if replayed else [])

    def _mirror(self, action: Action) -> None:
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

    def voided(self) -> dict[str, str]:
        """{chain.ref of a record: the tombstone's seq} for every record a tombstone voided."""
        return chain.voided(self.records(), self.key, self.model)[0]

    def events(self) -> list[dict[str, str]]:
        """The records that count: in chain order, up to the first break in the chain."""
        return [dict(r) for r in chain.intact(self.records(), self.key, self.model)]

    def problems(self, aliases: dict[str, str | None] | None = None) -> list[str]:
        """What `mlops audit verify` reports: chain breaks, the anchors' verdict (truncated,
        replaced, copied), then live aliases the chain does not explain, then unfinished
        promotions."""
        stored = audit_store.read(self.registry, self.model)
        if stored is None:
            return [f"the audit trail of {self.model} (experiment audit/{self.model}) was deleted"]
        found = self._broken(stored)
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
        if action in INTENT.values():
            return record
        if action in (Action.PROMOTED, Action.ROLLED_BACK, Action.PROMOTION_ABANDONED):
            return None
    return None


def previous_champion(events: list[dict[str, str]], current: str, alias: str
                      ) -> tuple[bool, str | None]:
    """(found, version) the current champion replaced, from the newest promotion to it; version
    None means it was the first champion. Chain order, never timestamps."""
    for record in reversed(events):
        if (record.get("action") == Action.PROMOTED and record.get("alias", alias) == alias
                and record.get("to_version") == current):
            return True, record.get("from_version") or None
    return False, None


def staged_digest(events: list[dict[str, str]], version: str) -> str | None:
    """The artifact digest the newest passed staging of `version` checked, if it was staged."""
    for record in reversed(events):
        if record.get("action") == Action.STAGED and record.get("to_version") == version:
            return record.get("digest", "")
    return None
