"""What an audit record says before the trail seals it: an `Action` from one closed list and the
fields every record has. `AuditEvent.record()` is the record format the chain has always stored,
so typed events hash exactly as the string-built records before them. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

# fields the trail and the chain add when they seal a record: an event never sets them
SEALED_FIELDS = ("model", "seq", "prev_hash", "at", "kid", "hash", "hmac", "deleted")


class Action(StrEnum):
    """Every action an audit record may carry."""

    REGISTERED = "registered"
    CHALLENGER = "challenger"
    STAGED = "staged"
    STAGING_FAILED = "staging-failed"
    PROMOTION_REFUSED = "promotion-refused"
    APPROVAL_REQUESTED = "approval-requested"
    APPROVAL_GIVEN = "approval-given"
    APPROVAL_REFUSED = "approval-refused"
    APPROVAL_REJECTED = "approval-rejected"
    APPROVAL_TIMEOUT = "approval-timeout"
    PROMOTION_INTENT = "promotion-intent"
    PROMOTED = "promoted"
    PROMOTION_ABANDONED = "promotion-abandoned"
    ROLLBACK_INTENT = "rollback-intent"
    ROLLED_BACK = "rolled-back"
    ROLLBACK_REFUSED = "rollback-refused"
    ALIAS_REALIGNED = "alias-realigned"
    CHECK_RECORDED = "check-recorded"
    TOMBSTONE = "tombstone"  # chain.TOMBSTONE: the chain knows its repair record by name


# a production move (promotion or rollback): its intent and its completion
INTENT = {"promotion": Action.PROMOTION_INTENT, "rollback": Action.ROLLBACK_INTENT}
DONE = {"promotion": Action.PROMOTED, "rollback": Action.ROLLED_BACK}


def action_of(value: str) -> Action:
    """The action a record names; a name outside `Action` is refused (never written)."""
    try:
        return Action(value)
    except ValueError:
        raise ValueError(f"unknown audit action {value!r} (known: "
                         f"{', '.join(a.value for a in Action)})") from None


@dataclass(frozen=True)
class AuditEvent:
    """One audit record before it is sealed (sequence, time and hashes are the trail's)."""

    action: Action
    environment: str
    from_version: str | None = None
    to_version: str | None = None
    actor: str = ""
    comment: str = ""
    flow_run_id: str | None = None
    reason: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", action_of(self.action))
        clash = sorted(set(self.extra) & {*BASE_FIELDS, *SEALED_FIELDS})
        if clash:
            raise ValueError(f"audit event extra field(s) {', '.join(clash)} are not extra")
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    def record(self) -> dict[str, str]:
        """The record as stored (its fields in this order; empty ones are dropped on write)."""
        return {"action": self.action.value, "environment": self.environment,
                "from_version": self.from_version or "", "to_version": self.to_version or "",
                "actor": self.actor, "comment": self.comment,
                "flow_run_id": self.flow_run_id or "", "reason": self.reason, **self.extra}

    @classmethod
    def from_record(cls, record: Mapping[str, str]) -> AuditEvent:
        """The event a (stored or hand-built) record says, seals left out."""
        base = {k: record[k] for k in BASE_FIELDS if k in record}
        extra = {k: v for k, v in record.items() if k not in (*BASE_FIELDS, *SEALED_FIELDS)}
        return cls(action=action_of(base.pop("action", "")),
                   environment=base.pop("environment", ""), extra=extra, **base)


BASE_FIELDS = ("action", "environment", "from_version", "to_version", "actor", "comment",
               "flow_run_id", "reason")
