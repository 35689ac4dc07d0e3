"""The audit chain's checks: every kind of tampering shows, an intact chain passes; records are
bound to their model (per-model keys), carry a key id so the key can rotate, the chain's end is
compared with its anchor, and a signed tombstone repairs what cannot stand."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from tasks.core import chain, tombstone

KEY = b"audit-key"
START = datetime(2026, 11, 1, tzinfo=UTC)


def trail(n: int = 4, key: chain.Key = None, model: str | None = None,
          start: int = 1, prev: str = chain.GENESIS) -> list[dict[str, str]]:
    records = []
    for i in range(start, start + n):
        record = chain.seal({"seq": str(i), "action": "promoted", "to_version": str(i),
                             "actor": "alice", "prev_hash": prev,
                             "at": (START + timedelta(minutes=i)).isoformat(),
                             **({"model": model} if model else {})}, key)
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
    assert found == [f"record 5 (promoted): signed with key {chain.key_id(b'guessed')}, which is "
                     "neither MLOPS_AUDIT_KEY nor a retired key (forged, or a retired key is "
                     "missing from MLOPS_AUDIT_KEYS_RETIRED)"]
    claimed = chain.seal({**forged, "kid": chain.key_id(KEY)})  # claims the real key's id
    claimed["hmac"] = forged["hmac"]
    assert chain.problems([*records, claimed], KEY) == [
        "record 5 (promoted): signature does not match (forged or altered)"]
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


def test_a_record_is_bound_to_its_model_by_its_field_and_its_key():
    """Another model's signed chain, copied in whole, is a cross-model replay; its signatures
    fail too, because each model's key is derived from the audit key."""
    other = trail(key=KEY, model="other")
    assert chain.problems(other, KEY, model="other") == []
    found = chain.problems(other, KEY, model="fraud")
    assert found[0] == "record 1 (promoted): cross-model replay: it belongs to model other, not fraud"
    assert "record 1 (promoted): signature does not match (forged or altered)" in found
    assert chain.intact(other, KEY, model="fraud") == []
    assert chain.derive(KEY, "fraud") != chain.derive(KEY, "other")


def test_a_rotated_key_still_verifies_older_records_by_their_key_id():
    old, new = b"key-2025", b"key-2026"
    records = trail(2, key=old, model="m")
    records += trail(2, key=new, model="m", start=3, prev=records[-1]["hash"])
    assert {r["kid"] for r in records} == {chain.key_id(old), chain.key_id(new)}
    assert chain.problems(records, chain.Keyring(new, (old,)), model="m") == []
    found = chain.problems(records, new, model="m")
    assert found[0].startswith(f"record 1 (promoted): signed with key {chain.key_id(old)}, which "
                               "is neither MLOPS_AUDIT_KEY nor a retired key")
    assert "key-2026" not in repr(chain.Keyring(new, (old,)))


def test_records_from_before_key_ids_verify_under_the_old_rule():
    """Written before key ids: HMAC with the audit key itself, no kid; still bound by `model`."""
    record = {"seq": "1", "action": "staged", "model": "m", "prev_hash": chain.GENESIS,
              "at": START.isoformat()}
    body = chain.canonical(record)
    old = {**record, "hash": hashlib.sha256(body).hexdigest(),
           "hmac": hmac.new(KEY, body, hashlib.sha256).hexdigest()}
    assert chain.problems([old], KEY, model="m") == []
    assert chain.problems([old], chain.Keyring(b"new", (KEY,)), model="m") == []
    assert "signature does not match" in chain.problems([old], b"other", model="m")[0]
    assert "cross-model replay" in chain.problems([old], KEY, model="x")[0]


def anchored(records, key=KEY):
    return chain.head(records, "m", "sqlite:///db", key)


def test_the_anchor_tells_truncation_and_prefix_replay_apart():
    records = trail(6, key=KEY, model="m")
    anchor = anchored(records)
    assert chain.anchor_problems(records, anchor, "m", "sqlite:///db", KEY) == []
    assert chain.anchor_problems([*records, *trail(1, KEY, "m", 7, records[-1]["hash"])],
                                 anchor, "m", "sqlite:///db", KEY) == []  # grown since: fine
    [cut] = chain.anchor_problems(records[:4], anchor, "m", "sqlite:///db", KEY)
    assert cut.startswith("truncated: the chain ends at record 4 but its anchor names record 6")
    assert chain.problems(records[:4], KEY, model="m") == []  # what main called intact
    other = trail(6, key=KEY, model="m", prev="1" * 64)  # another signed copy
    [replaced] = chain.anchor_problems(other, anchor, "m", "sqlite:///db", KEY)
    assert replaced.startswith("prefix replay: record 6 is not the record the anchor names")
    lowered = chain.seal({**anchored(records[:4], key=None)})  # rewritten without the key
    assert chain.anchor_problems(records[:4], lowered, "m", "sqlite:///db", KEY) == [
        "the anchor is unsigned (no HMAC although an audit key is set)"]
    elsewhere = chain.head(records, "m", "http://other", KEY)
    assert "not this trail's" in chain.anchor_problems(records, elsewhere, "m", "sqlite:///db",
                                                       KEY)[0]


def repaired(records, anchors=()):
    plan = tombstone.plan(records, chain.Keyring(KEY), "m", list(anchors))
    newest = max(int(r["seq"]) for r in records)
    stone = chain.seal({**plan.record("incident 7", "root"), "model": "m",
                        "at": (START + timedelta(minutes=newest + 1)).isoformat()}, KEY)
    return plan, stone


def test_a_signed_tombstone_voids_forged_records_and_the_chain_verifies_again():
    records = trail(4, key=KEY, model="m")
    forged = chain.seal({"seq": "5", "action": "promoted", "to_version": "666", "model": "m",
                         "prev_hash": records[-1]["hash"], "at": START.isoformat()}, b"guess")
    other = trail(1, key=KEY, model="x", start=6, prev=forged["hash"])[0]
    broken = [*records, forged, other]
    assert chain.problems(broken, KEY, model="m")
    plan, stone = repaired(broken)
    assert plan.voids == (chain.ref(forged), chain.ref(other)) and plan.seq == 7
    assert stone["voids"] == f"{chain.ref(forged)},{chain.ref(other)}"
    assert chain.problems([*broken, stone], KEY, model="m") == []
    assert [r["seq"] for r in chain.intact([*broken, stone], KEY, "m")] == \
        ["1", "2", "3", "4", "7"]
    # a tombstone nobody with the key signed voids nothing
    unsigned = chain.seal({k: v for k, v in stone.items() if k not in ("kid", "hmac")})
    assert chain.problems([*broken, unsigned], KEY, model="m")


def test_a_tombstone_declares_records_lost_below_the_anchor():
    records = trail(6, key=KEY, model="m")
    anchor = anchored(records)
    plan, stone = repaired(records[:4], anchors=[6])
    assert plan.lost == (5, 6) and stone["lost"] == "5-6" and plan.voids == ()
    whole = [*records[:4], stone]
    assert chain.problems(whole, KEY, model="m") == []
    assert chain.anchor_problems(whole, anchor, "m", "sqlite:///db", KEY) == []
    assert chain.anchor_problems(whole, anchored(whole), "m", "sqlite:///db", KEY) == []
    assert tombstone.plan(whole, chain.Keyring(KEY), "m", [6, 7]) is None  # nothing left
    assert tombstone.spans((1, 2, 3, 7, 9, 10)) == "1-3,7,9-10"


def test_the_settings_give_the_key_and_the_retired_ones_never_in_repr():
    from tasks.core.settings import Settings

    found = Settings.from_env({"MLOPS_AUDIT_KEY": "key-2026",
                               "MLOPS_AUDIT_KEYS_RETIRED": " key-2024, key-2025,"})
    keys = found.resolve_audit_key()
    assert keys.current == b"key-2026" and keys.retired == (b"key-2024", b"key-2025")
    assert "key-202" not in repr(found) + repr(keys)
    assert Settings.from_env({"MLFLOW_TRACKING_URI": "http://mlflow.example:5000"}
                             ).resolve_audit_key() is None


def test_a_laptops_own_store_gets_a_key_of_its_own_and_a_shared_server_none(tmp_path):
    """make run on a laptop signs without a configured key; nothing else does."""
    from tasks.core.settings import Settings

    home = {"MLOPS_HOME": str(tmp_path)}
    first = Settings.from_env(home).resolve_audit_key()
    assert first is not None and first.current == Settings.from_env(home).resolve_audit_key(
        ).current
    assert (tmp_path / "audit.key").stat().st_mode & 0o777 == 0o600
    stack = Settings.from_env({**home, "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"})
    assert stack.resolve_audit_key().current == first.current
    for shared in ("http://127.0.0.1:5999", "https://mlflow.example"):
        found = Settings.from_env({**home, "MLFLOW_TRACKING_URI": shared})
        assert found.resolve_audit_key() is None, shared
