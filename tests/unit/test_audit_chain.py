"""The audit chain's checks: every kind of tampering shows, an intact chain passes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tasks.core import chain

KEY = b"audit-key"


def trail(n: int = 4, key: bytes | None = None) -> list[dict[str, str]]:
    records, prev = [], chain.GENESIS
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for i in range(1, n + 1):
        record = chain.seal({"seq": str(i), "action": "promoted", "to_version": str(i),
                             "actor": "alice", "prev_hash": prev,
                             "at": (start + timedelta(minutes=i)).isoformat()}, key)
        records.append(record)
        prev = record["hash"]
    return records


def test_an_intact_chain_has_no_problems_and_counts_whole():
    records = trail()
    assert chain.problems(records) == [] and chain.intact(records) == records
    assert chain.problems(trail(key=KEY), KEY) == []


@pytest.mark.parametrize("tamper, expected", [
    (lambda r: r[1].update(to_version="9"), "record 2 (promoted): altered"),
    (lambda r: r[1].update(deleted="true"), "record 2 (promoted): deleted from the store"),
    (lambda r: r.pop(1), "records 2..2 are missing"),
    (lambda r: r.append({**r[3]}), "sequence number 4 appears twice"),
    (lambda r: r.__setitem__(3, chain.seal({**r[3], "at": "2999-01-01T00:00:00+00:00"})),
     "record 4 (promoted): dated in the future"),
    (lambda r: r.__setitem__(2, chain.seal({**r[2], "prev_hash": chain.GENESIS})),
     "record 3 (promoted): does not follow the record before it"),
    (lambda r: r.append({"action": "promoted", "to_version": "7", "hash": "f" * 64}),
     "no sequence number"),
])
def test_each_kind_of_tampering_is_named(tamper, expected):
    records = trail()
    tamper(records)
    found = chain.problems(records)
    assert any(expected in p for p in found), found


def test_a_forged_append_passes_the_hashes_but_not_the_signature():
    """Without a key anyone can compute a valid-looking next record; the HMAC stops that."""
    records = trail(key=KEY)
    forged = chain.seal({"seq": "5", "action": "promoted", "to_version": "666", "actor": "mallory",
                         "prev_hash": records[-1]["hash"],
                         "at": "2026-11-02T00:00:00+00:00"}, key=b"guessed")
    assert chain.problems([*records, {k: v for k, v in forged.items() if k != "hmac"}]) == []
    found = chain.problems([*records, forged], KEY)
    assert found == ["record 5 (promoted): signature does not match (forged or altered)"]
    unsigned = {k: v for k, v in forged.items() if k != "hmac"}
    assert chain.problems([*records, unsigned], KEY) == [
        "record 5 (promoted): unsigned (no HMAC although an audit key is set)"]


def test_what_counts_stops_at_the_first_break():
    records = trail(5)
    records[2]["to_version"] = "9"  # record 3 altered
    assert [r["seq"] for r in chain.intact(records)] == ["1", "2"]


def test_records_from_before_the_chain_count_for_nothing_and_break_nothing():
    legacy = {"action": "promoted", "to_version": "1", "at": "2026-01-01T00:00:00+00:00"}
    records = [legacy, *trail()]
    assert chain.problems(records) == []
    assert legacy not in chain.intact(records)
