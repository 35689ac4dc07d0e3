"""The audit trail against an insider who can write the MLflow store but holds neither the audit
key nor the anchor: cutting the newest records, a signed prefix copied into a fresh
`audit/<model>`, another model's chain copied in, a forged record verified without the key, a
production change without the key. Each is named by `mlops audit verify` (exit 1); the key
holder's signed tombstone (`mlops audit repair`) makes the chain verify again."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from mlops.cli import app
from tasks.adapters import audit_trail as audit
from tasks.adapters.audit_trail import event
from tasks.core import chain
from tasks.core.errors import ConfigError, RegistryError
from tests.conftest import trail_here, without_audit_key

runner = CliRunner()
NAME = "aud"
KEY = b"test-audit-key"  # MLOPS_AUDIT_KEY in tests (tests/conftest.py)


@pytest.fixture
def trail(write_config, registry):
    """Model `aud` (a config, nothing trained) and its trail with five signed records."""
    write_config(NAME)
    reg = registry()
    written = trail_here(reg, NAME, key=KEY)
    for action, version in (("staged", "1"), ("promotion-intent", "1"), ("promoted", "1"),
                            ("promotion-intent", "2"), ("promoted", "2")):
        written.write(event(action, "production", None, version, "alice"))
    return reg, written


def verify() -> tuple[int, str]:
    result = runner.invoke(app, ["audit", "verify", NAME])
    return result.exit_code, result.stderr + result.stdout


def runs(reg, model: str = NAME) -> dict[int, str]:
    """{seq: run id} of a trail's records."""
    audit_id = reg.client.get_experiment_by_name(f"audit/{model}").experiment_id
    return {int(r.data.params["seq"]): r.info.run_id for r in reg.client.search_runs([audit_id])}


def hard_delete(reg, run_id: str) -> None:
    """What `mlflow gc` does to a deleted run: gone for good, no mark left."""
    reg.client.delete_run(run_id)
    reg.client._tracking_client.store._hard_delete_run(run_id)


def copy_into_fresh_trail(reg, records: list[dict[str, str]]) -> None:
    """Only API calls: the trail's experiment renamed away, a fresh `audit/aud` holding copies."""
    old = reg.client.get_experiment_by_name(f"audit/{NAME}")
    if old is not None:
        reg.client.rename_experiment(old.experiment_id, f"audit-{NAME}-old")
    fresh = reg.client.create_experiment(f"audit/{NAME}")
    for record in records:
        run_id = reg.client.create_run(fresh).info.run_id
        for key, value in record.items():
            reg.client.log_param(run_id, key, value)


def test_cutting_the_newest_records_is_named_truncation_and_a_tombstone_repairs_it(trail):
    reg, written = trail
    assert verify()[0] == 0
    for seq in (4, 5):
        hard_delete(reg, runs(reg)[seq])
    code, out = verify()
    assert code == 1, out
    assert "truncated: the chain ends at record 3 but its anchor names record 5" in out
    with pytest.raises(RegistryError, match="truncated.*mlops audit repair aud"):
        written.write(event("staged", "staging", None, "3", "pipeline"))
    assert "mlflow gc" not in out
    repaired = runner.invoke(app, ["audit", "repair", NAME, "--reason", "lost in a gc",
                                   "--as", "keyholder"])
    assert repaired.exit_code == 0, repaired.output
    assert "tombstone record 6" in repaired.stdout and "lost: 4-5" in repaired.stdout
    code, out = verify()
    assert code == 0, out
    assert "anchored at record 6" in out
    written.write(event("staged", "staging", None, "3", "pipeline"))  # writes go on
    assert verify()[0] == 0


def test_a_signed_prefix_copied_into_a_fresh_experiment_is_prefix_replay(
        write_config, registry, monkeypatch, home):
    """Written two hours ago; copied (records 1..3) into a fresh experiment now."""
    write_config(NAME)
    reg = registry()
    written = trail_here(reg, NAME, key=KEY)
    with monkeypatch.context() as earlier:
        earlier.setattr(audit, "now_utc", lambda: datetime.now(UTC) - timedelta(hours=2))
        for version in ("1", "2", "3", "4", "5"):
            written.write(event("staged", "staging", None, version, "pipeline"))
            if version == "1":
                with sqlite3.connect(home / "state" / "mlflow.db") as db:
                    db.execute("UPDATE experiments SET creation_time = creation_time - 7200000"
                               " WHERE name = ?", (f"audit/{NAME}",))
    assert verify()[0] == 0
    copy_into_fresh_trail(reg, written.records()[:3])
    code, out = verify()
    assert code == 1, out
    assert "truncated: the chain ends at record 3 but its anchor names record 5" in out
    assert f"prefix replay: audit/{NAME} was created at" in out
    # the laptop's anchor file gone too: the experiment's age still tells
    for path in (home / "state" / "audit-anchors").glob("*.json"):
        path.unlink()
    code, out = verify()
    assert code == 1 and "prefix replay" in out and "truncated" not in out, out


def test_another_models_signed_chain_copied_in_is_cross_model_replay(write_config, registry):
    write_config(NAME)
    reg = registry()
    other = trail_here(reg, "other", key=KEY)
    for action in ("staged", "promotion-intent", "promoted"):
        other.write(event(action, "production", None, "1", "alice"))
    copy_into_fresh_trail(reg, other.records())
    code, out = verify()
    assert code == 1, out
    assert "record 1 (staged): cross-model replay: it belongs to model other, not aud" in out
    assert "signature does not match" in out  # the key is derived per model
    assert trail_here(reg, NAME).events() == []


def test_verify_without_the_key_is_unverifiable_never_intact(trail, monkeypatch):
    reg, _ = trail
    last = max(trail_here(reg, NAME).records(), key=lambda r: int(r["seq"]))
    forged = reg.client.create_run(reg.client.get_experiment_by_name(
        f"audit/{NAME}").experiment_id).info.run_id
    body = chain.seal({"seq": "6", "action": "promoted", "to_version": "666", "model": NAME,
                       "actor": "mallory", "prev_hash": last["hash"], "at": last["at"]})
    for key, value in body.items():
        reg.client.log_param(forged, key, value)
    without_audit_key(monkeypatch)
    code, out = verify()
    assert code == 1, out
    assert "UNVERIFIABLE" in out and "intact" not in out.replace("nothing is called intact", "")
    monkeypatch.setenv("MLOPS_AUDIT_KEY", "test-audit-key")
    code, out = verify()
    assert code == 1 and "record 6 (promoted): unsigned" in out, out


def test_no_production_record_without_the_key(trail, monkeypatch):
    reg, _ = trail
    without_audit_key(monkeypatch)
    keyless = trail_here(reg, NAME)
    before = len(keyless.records())
    for action in ("promotion-intent", "promoted", "rollback-intent", "rolled-back"):
        with pytest.raises(ConfigError, match="^set MLOPS_AUDIT_KEY .*nothing was changed$"):
            keyless.write(event(action, "production", "1", "2", "alice"))
    assert len(keyless.records()) == before
    # nor any other record: unsigned, it would break this signed chain
    with pytest.raises(ConfigError, match="signed audit trail of aud"):
        keyless.write(event("approval-requested", "production", None, "2", "pipeline"))
    lenient = trail_here(reg, NAME, require_key=False)  # what a policy may choose elsewhere
    with pytest.raises(ConfigError, match="signed audit trail of aud"):
        lenient.write(event("promotion-intent", "production", "1", "2", "alice"))
    assert len(keyless.records()) == before
    repair = runner.invoke(app, ["audit", "repair", NAME, "--reason", "x"])
    assert repair.exit_code == 2 and "set MLOPS_AUDIT_KEY" in repair.stderr


def test_a_forged_record_is_voided_by_a_tombstone_and_shown_as_voided(trail):
    reg, written = trail
    last = max(written.records(), key=lambda r: int(r["seq"]))
    forged = reg.client.create_run(reg.client.get_experiment_by_name(
        f"audit/{NAME}").experiment_id).info.run_id
    body = chain.seal({"seq": "6", "action": "promoted", "to_version": "666", "model": NAME,
                       "actor": "mallory", "prev_hash": last["hash"], "at": last["at"]},
                      b"guessed")
    for key, value in body.items():
        reg.client.log_param(forged, key, value)
    assert verify()[0] == 1
    repaired = runner.invoke(app, ["audit", "repair", NAME, "--reason", "forged by mallory"])
    assert repaired.exit_code == 0, repaired.output
    assert f"voids {chain.ref(body)}" in repaired.stdout
    code, out = verify()
    assert code == 0 and "1 voided by a tombstone" in out, out
    history = runner.invoke(app, ["history", NAME])
    assert "[VOIDED by 7]" in history.stdout and "IS NOT INTACT" not in history.stderr
    assert [e["seq"] for e in written.events()][-2:] == ["5", "7"]
    assert runner.invoke(app, ["audit", "repair", NAME, "--reason", "again"]).exit_code == 1


def test_a_rotated_key_verifies_older_records_through_the_retired_list(trail, monkeypatch):
    reg, _ = trail
    monkeypatch.setenv("MLOPS_AUDIT_KEY", "new-audit-key")
    code, out = verify()
    assert code == 1 and f"signed with key {chain.key_id(b'test-audit-key')}" in out, out
    monkeypatch.setenv("MLOPS_AUDIT_KEYS_RETIRED", "older-key,test-audit-key")
    trail_here(reg, NAME).write(event("staged", "staging", None, "3", "pipeline"))
    code, out = verify()
    assert code == 0 and f"key {chain.key_id(b'new-audit-key')}" in out, out
    assert trail_here(reg, NAME).records()[-1]["kid"] == chain.key_id(b"new-audit-key")


def test_the_prefect_variable_anchor_catches_a_cut_when_the_local_file_is_gone(
        write_config, registry, monkeypatch, home):
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())  # the test server's
    write_config(NAME)
    reg = registry()
    written = trail_here(reg, NAME)
    assert [a.where.split()[0] for a in written.anchors] == ["file", "Prefect"]
    for version in ("1", "2", "3"):
        written.write(event("staged", "staging", None, version, "pipeline"))
    head = written.anchors[1].read()
    assert head["seq"] == "3" and head["kid"] == chain.key_id(b"test-audit-key")
    hard_delete(reg, runs(reg)[3])
    for path in (home / "state" / "audit-anchors").glob("*.json"):
        path.unlink()  # the insider's own laptop: its file anchor is theirs to delete
    code, out = verify()
    assert code == 1, out
    assert "truncated: the chain ends at record 2 but its anchor names record 3" in out
    assert "(Prefect variable mlops-audit-head-aud-" in out


def test_one_lock_per_model_across_threads_and_registry_objects(write_config, registry):
    """Two clients of one store in one process (as a server's threads are) exclude each other:
    the lock is the store's, re-entrant only within one thread."""
    from tasks.adapters import audit_anchor, audit_store

    write_config(NAME)
    spans: list[tuple[float, float]] = []

    def hold() -> None:
        with audit_store.model_lock(registry(), NAME, timeout_s=30):
            start = time.monotonic()
            with audit_store.model_lock(registry(), NAME):  # re-entrant in this thread
                time.sleep(1.0)
            spans.append((start, time.monotonic()))

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    (a0, a1), (b0, b1) = sorted(spans)
    assert a1 <= b0, f"held at once: {spans}"
    assert audit_anchor.store_id("https://u:pw@host/api/?x=1") == "https://host/api"


def test_history_shows_an_unsealed_record_as_counting_for_nothing(trail):
    """A record without sequence number or hash (from before the chain, or written by hand) is
    shown, marked, and changes nothing."""
    reg, written = trail
    run_id = reg.client.create_run(reg.client.get_experiment_by_name(
        f"audit/{NAME}").experiment_id).info.run_id
    for key, value in {"action": "promoted", "to_version": "9", "actor": "mallory",
                       "comment": "v9 approved"}.items():
        reg.client.log_param(run_id, key, value)
    history = runner.invoke(app, ["history", NAME])
    [row] = [line for line in history.stdout.splitlines() if "mallory" in line]
    assert "[UNSEALED: counts for nothing]" in row
    assert all(e.get("to_version") != "9" for e in written.events())
    assert verify()[0] == 0
