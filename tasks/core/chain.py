"""A hash chain of records: each record carries its sequence number, the hash of the record
before it and its own hash (plus an HMAC when a key is set), so a removed, altered, reordered or
inserted record shows. Pure functions; where the records are stored is the caller's business."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

SEALS = ("hash", "hmac")
NOT_HASHED = (*SEALS, "deleted")  # "deleted" is the store's mark, not the record's content
GENESIS = "0" * 64
FUTURE_SKEW = timedelta(minutes=5)


def canonical(record: Mapping[str, str]) -> bytes:
    """The bytes a record's hash covers: every field but the seals, sorted, as compact JSON."""
    body = {k: str(v) for k, v in record.items() if k not in NOT_HASHED}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def seal(record: Mapping[str, str], key: bytes | None = None) -> dict[str, str]:
    """The record with its hash (and HMAC when a key is given)."""
    sealed = {k: str(v) for k, v in record.items() if k not in NOT_HASHED}
    body = canonical(sealed)
    sealed["hash"] = hashlib.sha256(body).hexdigest()
    if key:
        sealed["hmac"] = hmac.new(key, body, hashlib.sha256).hexdigest()
    return sealed


def problems(records: list[Mapping[str, str]], key: bytes | None = None,
             now: datetime | None = None) -> list[str]:
    """Everything wrong with a chain, one line each (empty when it is intact)."""
    return [message for _, message in check(records, key, now)]


def intact(records: list[Mapping[str, str]], key: bytes | None = None
           ) -> list[Mapping[str, str]]:
    """The records in chain order up to (not including) the first one with a problem."""
    first_bad = min((at for at, _ in check(records, key)), default=None)
    ordered = sorted((r for r in records if not legacy(r)), key=lambda r: seq_of(r) or 0)
    return [r for r in ordered if first_bad is None or (seq_of(r) or 0) < first_bad]


def check(records: list[Mapping[str, str]], key: bytes | None = None,
          now: datetime | None = None) -> list[tuple[int, str]]:
    """(sequence number where it shows, problem) for everything wrong with a chain. `records`
    are in any order; each must carry seq (1, 2, …), prev_hash, hash and `at` (ISO time, UTC);
    a record marked `deleted` = "true" by the store counts as removed."""
    found: list[tuple[int, str]] = []
    now = now or datetime.now(UTC)
    ordered = sorted((r for r in records if not legacy(r)), key=lambda r: seq_of(r) or 0)
    seen: dict[int, Mapping[str, str]] = {}
    previous: Mapping[str, str] | None = None
    for record in ordered:
        seq = seq_of(record)
        label = f"record {record.get('seq', '?')} ({record.get('action', '?')})"
        if seq is None:
            # not part of the chain: reported, but it cuts nothing off
            found.append((sys.maxsize, f"{label}: no sequence number (not written by the "
                                       "pipeline)"))
            continue
        if seq in seen:
            found.append((seq, f"{label}: sequence number {seq} appears twice (forged or "
                               "replayed)"))
            continue
        seen[seq] = record
        if record.get("deleted") == "true":
            found.append((seq, f"{label}: deleted from the store"))
        expected = previous["hash"] if previous else GENESIS
        if previous is not None and seq != seq_of(previous) + 1:
            found.append((seq_of(previous) + 1, f"records {seq_of(previous) + 1}..{seq - 1} are missing"))
        elif previous is None and seq != 1:
            found.append((1, f"records 1..{seq - 1} are missing"))
        if record.get("prev_hash") != expected and (previous is not None or seq == 1):
            found.append((seq, f"{label}: does not follow the record before it (chain broken)"))
        body = canonical(record)
        if record.get("hash") != hashlib.sha256(body).hexdigest():
            found.append((seq, f"{label}: altered (its hash does not match its content)"))
        if key is not None:
            mac = hmac.new(key, body, hashlib.sha256).hexdigest()
            if not record.get("hmac"):
                found.append((seq, f"{label}: unsigned (no HMAC although an audit key is set)"))
            elif not hmac.compare_digest(record["hmac"], mac):
                found.append((seq, f"{label}: signature does not match (forged or altered)"))
        at = time_of(record.get("at"))
        if at is None:
            found.append((seq, f"{label}: no valid time"))
        elif at > now + FUTURE_SKEW:
            found.append((seq, f"{label}: dated in the future ({record['at']})"))
        elif previous is not None and (time_of(previous.get("at")) or at) > at:
            found.append((seq, f"{label}: dated before the record it follows (reordered?)"))
        previous = record
    return found


def legacy(record: Mapping[str, str]) -> bool:
    """A record from before the chain existed (no sequence number, no hash): it is shown, but
    it counts for nothing and is not checked."""
    return "seq" not in record and "hash" not in record


def seq_of(record: Mapping[str, str]) -> int | None:
    try:
        return int(record.get("seq", ""))
    except ValueError:
        return None


def time_of(value: str | None) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value or "")
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
