"""What a signed tombstone repairs in a broken audit chain: the records to void for good (forged,
altered, unsigned, another model's, out of the chain) and the sequence numbers lost (removed
from the store, or cut off below the anchor). Pure: the trail writes the record."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from tasks.core import chain


@dataclass(frozen=True)
class Plan:
    voids: tuple[str, ...]  # chain.ref of each record voided
    lost: tuple[int, ...]
    seq: int  # the tombstone's own sequence number
    prev_hash: str  # the newest record that stays

    def record(self, reason: str, actor: str) -> dict[str, str]:
        return {"action": chain.TOMBSTONE, "environment": "audit", "actor": actor,
                "reason": reason, "voids": ",".join(self.voids), "lost": spans(self.lost),
                "seq": str(self.seq), "prev_hash": self.prev_hash}


def unsound(record: Mapping[str, str], keys: chain.Keyring, model: str,
            now: datetime | None = None) -> str | None:
    """Why a record cannot stand on its own (a tombstone voids it), or None."""
    if chain.seq_of(record) is None:
        return "no sequence number"
    if record.get("model") != model:
        return f"belongs to model {record.get('model') or '(none)'}"
    if record.get("hash") != hashlib.sha256(chain.canonical(record)).hexdigest():
        return "altered"
    wrong = chain.signature_problem(record, keys, model)
    if wrong:
        return wrong
    at = chain.time_of(record.get("at"))
    if at is None or at > (now or datetime.now(UTC)) + chain.FUTURE_SKEW:
        return "no valid time"
    return None


def plan(records: Sequence[Mapping[str, str]], keys: chain.Keyring, model: str,
         anchored: list[int], now: datetime | None = None) -> Plan | None:
    """The tombstone that makes the chain whole again, or None when nothing needs one. Deleted
    records that are sound are not voided: restore them (`mlflow runs restore`)."""
    void, lost_before = chain.voided(records, keys, model)
    live = [r for r in records if not chain.legacy(r) and chain.ref(r) not in void]
    bad = [r for r in live if unsound(r, keys, model, now)]
    sound = [r for r in live if r not in bad]
    highest = max([chain.seq_of(r) or 0 for r in records if chain.seq_of(r) is not None]
                  + list(anchored) + [0])
    present = {chain.seq_of(r) for r in sound}
    voided_seqs = {chain.seq_of(r) for r in bad} | {int(v.partition(":")[0]) for v in void
                                                     if v.partition(":")[0].isdigit()}
    lost = tuple(s for s in range(1, highest + 1)
                 if s not in present and s not in voided_seqs and s not in lost_before)
    if not bad and not lost:
        return None
    newest = max(sound, key=lambda r: chain.seq_of(r) or 0, default=None)
    return Plan(voids=tuple(chain.ref(r) for r in bad), lost=lost, seq=highest + 1,
                prev_hash=newest["hash"] if newest else chain.GENESIS)


def spans(seqs: tuple[int, ...]) -> str:
    """1,2,3,7 -> "1-3,7"."""
    out: list[str] = []
    for seq in sorted(seqs):
        if out and out[-1].rsplit("-", 1)[-1] == str(seq - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{seq}"
        else:
            out.append(str(seq))
    return ",".join(out)
