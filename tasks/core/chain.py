"""A hash chain of records: each record carries its sequence number, the hash of the record
before it and its own hash (plus an HMAC when a key is set), so a removed, altered, reordered or
inserted record shows. Records are bound to their model: each names it, and the HMAC key is
derived per model from the audit key, with the key's id (`kid`) in the record so the key can be
rotated. A signed `tombstone` voids named records (or declares lost ones) for good; the chain's
newest record (its head) is compared with an anchor kept outside the store. Pure functions;
where the records and the anchor are stored is the caller's business."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

SEALS = ("hash", "hmac")
NOT_HASHED = (*SEALS, "deleted")  # "deleted" is the store's mark, not the record's content
GENESIS = "0" * 64
FUTURE_SKEW = timedelta(minutes=5)
TOMBSTONE = "tombstone"


@dataclass(frozen=True)
class Keyring:
    """The audit key that signs now and retired ones that still verify older records."""

    current: bytes = field(repr=False)
    retired: tuple[bytes, ...] = field(default=(), repr=False)

    @property
    def kid(self) -> str:
        return key_id(self.current)

    def signing_key(self, model: str) -> bytes:
        return derive(self.current, model)

    def by_id(self) -> dict[str, bytes]:
        """Every master key this keyring knows, by key id (the current one wins a clash)."""
        return {key_id(k): k for k in (*reversed(self.retired), self.current)}


Key = Keyring | bytes | None


def keyring(key: Key) -> Keyring | None:
    """A plain key is a keyring with nothing retired."""
    return Keyring(key) if isinstance(key, bytes) and key else key or None


def derive(master: bytes, model: str) -> bytes:
    """The model's own HMAC key: a chain copied to another model fails its signatures."""
    return hmac.new(master, b"mlops-audit:" + model.encode(), hashlib.sha256).digest()


def key_id(master: bytes) -> str:
    """A short public name of a master key (not of the per-model keys), shown and recorded."""
    return hashlib.sha256(b"mlops-audit-kid:" + master).hexdigest()[:8]


def canonical(record: Mapping[str, str]) -> bytes:
    """The bytes a record's hash covers: every field but the seals, sorted, as compact JSON."""
    body = {k: str(v) for k, v in record.items() if k not in NOT_HASHED}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def seal(record: Mapping[str, str], key: Key = None) -> dict[str, str]:
    """The record with its hash (and, with a key, its key id and an HMAC under the key derived
    for the record's `model`)."""
    keys = keyring(key)
    sealed = {k: str(v) for k, v in record.items() if k not in NOT_HASHED}
    if keys:
        sealed["kid"] = keys.kid
    body = canonical(sealed)
    sealed["hash"] = hashlib.sha256(body).hexdigest()
    if keys:
        sealed["hmac"] = hmac.new(keys.signing_key(sealed.get("model", "")), body,
                                  hashlib.sha256).hexdigest()
    return sealed


def signature_problem(record: Mapping[str, str], keys: Keyring, model: str | None) -> str | None:
    """Why a record's HMAC does not hold under these keys, or None. A record with a key id is
    checked under that key derived for `model` (else its own); one from before key ids (no
    `kid`) under the old rule: the master key itself."""
    if not record.get("hmac"):
        return "unsigned (no HMAC although an audit key is set)"
    body = canonical(record)
    kid = record.get("kid")
    if kid:
        master = keys.by_id().get(kid)
        if master is None:
            return (f"signed with key {kid}, which is neither MLOPS_AUDIT_KEY nor a retired key "
                    "(forged, or a retired key is missing from MLOPS_AUDIT_KEYS_RETIRED)")
        candidates = [derive(master, model if model is not None else record.get("model", ""))]
    else:
        candidates = list(keys.by_id().values())
    if any(hmac.compare_digest(record["hmac"], hmac.new(k, body, hashlib.sha256).hexdigest())
           for k in candidates):
        return None
    return "signature does not match (forged or altered)"


def problems(records: Sequence[Mapping[str, str]], key: Key = None, now: datetime | None = None,
             model: str | None = None) -> list[str]:
    """Everything wrong with a chain, one line each (empty when it is intact)."""
    return [message for _, message in check(records, key, now, model)]


def intact(records: Sequence[Mapping[str, str]], key: Key = None, model: str | None = None
           ) -> list[Mapping[str, str]]:
    """The records in chain order up to (not including) the first one with a problem; records a
    valid tombstone voided are left out."""
    first_bad = min((at for at, _ in check(records, key, model=model)), default=None)
    void, _ = voided(records, key, model)
    ordered = sorted((r for r in records if not legacy(r) and ref(r) not in void),
                     key=lambda r: seq_of(r) or 0)
    return [r for r in ordered if first_bad is None or (seq_of(r) or 0) < first_bad]


def ref(record: Mapping[str, str]) -> str:
    """How a tombstone names a record: its sequence number and the start of its hash."""
    return f"{record.get('seq', '')}:{record.get('hash', '')[:12]}"


def voided(records: Sequence[Mapping[str, str]], key: Key = None, model: str | None = None
           ) -> tuple[dict[str, str], set[int]]:
    """({record ref: seq of the tombstone voiding it}, seqs declared lost) by the tombstones
    that hold: unaltered, of this model and, with a key, signed by it."""
    keys = keyring(key)
    void: dict[str, str] = {}
    lost: set[int] = set()
    for record in records:
        if (record.get("action") != TOMBSTONE or record.get("deleted") == "true"
                or record.get("hash") != hashlib.sha256(canonical(record)).hexdigest()
                or (model is not None and record.get("model") != model)
                or (keys is not None and signature_problem(record, keys, model))):
            continue
        for item in filter(None, record.get("voids", "").split(",")):
            void[item] = record.get("seq", "?")
        for span in filter(None, record.get("lost", "").split(",")):
            first, _, last = span.partition("-")
            lost.update(range(int(first), int(last or first) + 1))
    return void, lost


def check(records: Sequence[Mapping[str, str]], key: Key = None, now: datetime | None = None,
          model: str | None = None) -> list[tuple[int, str]]:
    """(sequence number where it shows, problem) for everything wrong with a chain. `records`
    are in any order; each must carry seq (1, 2, …), prev_hash, hash and `at` (ISO time, UTC);
    a record marked `deleted` = "true" by the store counts as removed. With `model`, a record of
    another model is a cross-model replay. Records a valid tombstone voids are skipped, and the
    gap they (or records it declares lost) leave is no break."""
    found: list[tuple[int, str]] = []
    keys = keyring(key)
    now = now or datetime.now(UTC)
    void, lost = voided(records, keys, model)
    gone = {int(r.partition(":")[0]) for r in void if r.partition(":")[0].isdigit()} | lost
    hashes_at: dict[int, set[str]] = {}
    for record in records:
        voided_at = seq_of(record) if ref(record) in void else None
        if voided_at is not None:
            hashes_at.setdefault(voided_at, set()).add(record.get("hash", ""))
    ordered = sorted((r for r in records if not legacy(r) and ref(r) not in void),
                     key=lambda r: seq_of(r) or 0)
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
        if model is not None and record.get("model") != model:
            found.append((seq, f"{label}: cross-model replay: it belongs to model "
                               f"{record.get('model') or '(none named)'}, not {model}"))
        if record.get("deleted") == "true":
            found.append((seq, f"{label}: deleted from the store"))
        start = (seq_of(previous) or 0) + 1  # the record before has a number (or none: 1)
        missing = [s for s in range(start, seq) if s not in gone]
        if missing:
            found.append((missing[0], f"records {missing[0]}..{missing[-1]} are missing"))
        expected = {previous["hash"] if previous else GENESIS, *hashes_at.get(seq - 1, ())}
        if (record.get("prev_hash") not in expected and (seq - 1) not in lost
                and (previous is not None or seq == 1 or not missing)):
            found.append((seq, f"{label}: does not follow the record before it (chain broken)"))
        found += [(seq, f"{label}: {wrong}") for wrong in _seal_problems(record, keys, model)]
        when = _time_problem(record, previous, now)
        if when:
            found.append((seq, f"{label}: {when}"))
        previous = record
    return found


def _seal_problems(record: Mapping[str, str], keys: Keyring | None, model: str | None
                   ) -> list[str]:
    """The record altered (its hash), or its signature wrong (with a key)."""
    found = []
    if record.get("hash") != hashlib.sha256(canonical(record)).hexdigest():
        found.append("altered (its hash does not match its content)")
    wrong = signature_problem(record, keys, model) if keys is not None else None
    if wrong:
        found.append(wrong)
    return found


def _time_problem(record: Mapping[str, str], previous: Mapping[str, str] | None,
                  now: datetime) -> str | None:
    at = time_of(record.get("at"))
    if at is None:
        return "no valid time"
    if at > now + FUTURE_SKEW:
        return f"dated in the future ({record['at']})"
    if previous is not None and (time_of(previous.get("at")) or at) > at:
        return "dated before the record it follows (reordered?)"
    return None


def head(records: list[Mapping[str, str]], model: str, store: str, key: Key = None
         ) -> dict[str, str] | None:
    """What the anchor keeps: the newest record's sequence number and hash, bound to the model
    and the store, signed when a key is set; None for an empty chain."""
    chained = [r for r in records if seq_of(r) is not None]
    if not chained:
        return None
    newest = max(chained, key=lambda r: seq_of(r) or 0)
    return seal({"model": model, "store": store, "seq": newest["seq"],
                 "head_hash": newest["hash"]}, key)


def anchor_problems(records: Sequence[Mapping[str, str]], anchor: Mapping[str, str] | None,
                    model: str, store: str, key: Key = None) -> list[str]:
    """How the chain's end disagrees with its anchor: the anchor altered, the chain truncated
    (it ends before the anchored record), or replaced by another copy (prefix replay: the
    record at the anchored sequence number is another one)."""
    if not anchor:
        return []
    keys = keyring(key)
    if anchor.get("model") != model or anchor.get("store") != store:
        return [f"the anchor names {anchor.get('model')} in {anchor.get('store')}: not this "
                "trail's (altered)"]
    if anchor.get("hash") != hashlib.sha256(canonical(anchor)).hexdigest():
        return ["the anchor was altered (its hash does not match its content)"]
    if keys is not None:
        wrong = signature_problem(anchor, keys, model)
        if wrong:
            return [f"the anchor is {wrong}"]
    seq, anchored = seq_of(anchor) or 0, anchor.get("head_hash", "")
    _, lost = voided(records, keys, model)
    at_seq = [r for r in records if seq_of(r) == seq]
    if seq in lost or any(r.get("hash") == anchored for r in at_seq):
        return []
    if at_seq:
        return [f"prefix replay: record {seq} is not the record the anchor names (hash "
                f"{at_seq[0].get('hash', '')[:12]}… instead of {anchored[:12]}…): the chain "
                "was replaced by another copy"]
    last = max((seq_of(r) or 0 for r in records if seq_of(r) is not None), default=0)
    if last < seq:
        return [f"truncated: the chain ends at record {last} but its anchor names record {seq}"
                f" (hash {anchored[:12]}…): records {last + 1}..{seq} were removed"]
    return [f"record {seq}, which the anchor names, is missing (removed)"]


def legacy(record: Mapping[str, str]) -> bool:
    """A record from before the chain existed (no sequence number, no hash): it is shown, but
    it counts for nothing and is not checked."""
    return "seq" not in record and "hash" not in record


def seq_of(record: Mapping[str, str] | None) -> int | None:
    try:
        return int((record or {}).get("seq", ""))
    except ValueError:
        return None


def time_of(value: str | None) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value or "")
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
