"""Typed audit events: every action comes from `Action`, and an `AuditEvent` is stored as exactly
the record the string-built events made, so an existing chain verifies and hashes unchanged; an
unknown action is refused before anything is written."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.adapters import audit_trail as audit
from tasks.adapters.audit_trail import AuditTrail, event
from tasks.core import chain
from tasks.core.audit_event import SEALED_FIELDS, Action, AuditEvent

KEY = b"audit-key"
START = datetime(2026, 11, 1, tzinfo=UTC)
POLICY = Path(__file__).resolve().parents[2] / "configs" / "policy.yaml"


def old_event(action: str, environment: str, from_version: str | None, to_version: str | None,
              actor: str, comment: str = "", flow_run_id: str | None = None, reason: str = "",
              **extra: str) -> dict[str, str]:
    """How records were built before `AuditEvent` (tasks/adapters/audit_trail.py, issue 26)."""
    return {"action": action, "environment": environment, "from_version": from_version or "",
            "to_version": to_version or "", "actor": actor, "comment": comment,
            "flow_run_id": flow_run_id or "", "reason": reason, **extra}


# one of each shape the pipeline writes: extras, empty versions, comments, reasons, facts
CALLS = [
    (("registered", "registry", None, "1", "pipeline"), {"fact.built_by": "dave", "digest": "ab"}),
    (("challenger", "registry", None, "1", "pipeline"), {"alias": "challenger"}),
    (("staged", "staging", None, "1", "ci"), {"flow_run_id": "r1", "alias": "staging"}),
    (("approval-requested", "production", None, "1", "pipeline"), {"flow_run_id": "r1"}),
    (("approval-given", "production", None, "1", "alice", "ship it"), {"identity": "alice@x"}),
    (("promotion-intent", "production", None, "1", "alice", "ship it", "r1"),
     {"alias": "champion", "policy_sha256": "p" * 8}),
    (("promoted", "production", None, "1", "alice", "ship it", "r1"), {"alias": "champion"}),
    (("rolled-back", "production", "1", None, "automatic", "post-deploy check failed", "r2",
      "smoke failed"), {"alias": "champion"}),
    (("check-recorded", "registry", None, "1", "erin"), {"check": "bias", "result": "passed"}),
]


def sealed_old_way(records: list[dict[str, str]], model: str) -> list[dict[str, str]]:
    """A chain as the trail sealed the old records (empty fields dropped, then sealed)."""
    out: list[dict[str, str]] = []
    for i, record in enumerate(records, start=1):
        body = {k: v for k, v in record.items() if v not in (None, "")}
        out.append(chain.seal({**body, "model": model, "seq": str(i),
                               "prev_hash": out[-1]["hash"] if out else chain.GENESIS,
                               "at": (START + timedelta(minutes=i)).isoformat(
                                   timespec="microseconds")}, KEY))
    return out


def test_every_event_is_the_record_the_old_strings_made_field_for_field_in_order():
    for args, extra in CALLS:
        typed = event(Action(args[0]), *args[1:], **extra).record()
        assert list(typed.items()) == list(old_event(*args, **extra).items())


class MemoryStore:
    """The trail's store in a list (what audit_store keeps as MLflow runs)."""

    def __init__(self) -> None:
        self.records: list[dict[str, str]] = []

    def install(self, monkeypatch) -> None:
        monkeypatch.setattr(audit.audit_store, "read", lambda registry, model: self.records)
        monkeypatch.setattr(audit.audit_store, "append",
                            lambda registry, model, record: self.records.append(record))
        monkeypatch.setattr(audit.audit_store, "created", lambda registry, model: None)
        monkeypatch.setattr(audit.audit_store, "model_lock",
                            lambda registry, model: contextlib.nullcontext())


class FakeRegistry:
    uri = "sqlite:///nowhere.db"
    max_param_chars = 6000


def test_a_trail_writing_typed_events_stores_byte_identical_records(monkeypatch):
    store = MemoryStore()
    store.install(monkeypatch)
    clock = iter(START + timedelta(minutes=i) for i in range(1, len(CALLS) + 1))
    monkeypatch.setattr(audit, "now_utc", lambda: next(clock))
    trail = AuditTrail(FakeRegistry(), "fraud", key=KEY, anchors=[])  # type: ignore[arg-type]
    for args, extra in CALLS:
        trail.write(event(Action(args[0]), *args[1:], **extra))
    expected = sealed_old_way([old_event(*args, **extra) for args, extra in CALLS], "fraud")
    assert [json.dumps(r) for r in store.records] == [json.dumps(r) for r in expected]
    assert chain.problems(store.records, KEY, model="fraud") == []


def test_a_stored_record_reads_back_as_the_event_that_wrote_it():
    for record in sealed_old_way([old_event(*a, **e) for a, e in CALLS], "fraud"):
        again = AuditEvent.from_record(record).record()
        assert {k: v for k, v in again.items() if v} == {
            k: v for k, v in record.items() if k not in SEALED_FIELDS}


def test_an_unknown_action_is_refused_and_nothing_is_written(monkeypatch):
    store = MemoryStore()
    store.install(monkeypatch)
    trail = AuditTrail(FakeRegistry(), "fraud", key=KEY, anchors=[])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown audit action 'check-off'"):
        trail.write(event("check-off", "production", None, "1", "alice"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown audit action 'approved'"):
        trail.write(AuditEvent.from_record({"action": "approved", "environment": "production"}))
    assert store.records == []


def test_an_event_cannot_set_what_the_trail_seals():
    with pytest.raises(ValueError, match="seq"):
        event(Action.STAGED, "staging", None, "1", "ci", seq="7")


def test_an_event_is_frozen():
    staged = event(Action.STAGED, "staging", None, "1", "ci", alias="staging")
    with pytest.raises(AttributeError):
        staged.action = Action.PROMOTED  # type: ignore[misc]
    with pytest.raises(TypeError):
        staged.extra["alias"] = "champion"  # type: ignore[index]


def test_the_chain_names_its_repair_record_by_the_tombstone_action():
    assert chain.TOMBSTONE == Action.TOMBSTONE


def test_a_trail_is_signed_and_anchored_as_its_caller_says_not_as_the_environment_does(
        monkeypatch, tmp_path):
    """AuditTrail(registry, model) used to read the settings itself (MLOPS_AUDIT_KEY, MLOPS_HOME,
    PREFECT_API_URL): now the key and the settings (where its anchors are) are the caller's,
    and a trail given neither settings nor anchors is refused."""
    from tasks.adapters.audit_anchor import FileAnchor, PrefectAnchor
    from tasks.core.settings import Settings

    monkeypatch.setenv("MLOPS_AUDIT_KEY", "the-environments-key")
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "environment"))
    given = Settings.from_env({"MLOPS_HOME": str(tmp_path / "given"),
                               "PREFECT_API_URL": "http://127.0.0.1:9/api"})
    trail = AuditTrail(FakeRegistry(), "fraud", settings=given, key=None)  # type: ignore[arg-type]
    assert trail.key is None
    file, prefect = trail.anchors
    assert isinstance(file, FileAnchor) and file.path.is_relative_to(tmp_path / "given")
    assert isinstance(prefect, PrefectAnchor) and prefect.api_url == "http://127.0.0.1:9/api"
    with pytest.raises(TypeError, match="needs the settings"):
        AuditTrail(FakeRegistry(), "fraud", key=KEY)  # type: ignore[arg-type]


def test_the_signed_context_is_the_runtimes_settings_policy_and_key(tmp_path):
    """register and promote get one argument holding what the process read once."""
    from tasks.core.runtime import Runtime
    from tasks.core.settings import Settings

    runtime = Runtime(Settings.from_env({"MLOPS_HOME": str(tmp_path), "MLOPS_AUDIT_KEY": "k3y-s3cret",
                                         "MLOPS_POLICY": str(POLICY)}))
    signed = runtime.signed
    assert signed.settings is runtime.settings and signed.policy is runtime.policy
    assert signed.key is runtime.audit_key and signed.key is not None
    assert runtime.signed is signed  # read once
    assert "k3y-s3cret" not in repr(signed) and "key=" not in repr(signed)


def test_the_model_lock_waits_when_its_create_loses_a_race_and_reads_not_found(monkeypatch):
    """Two threads create the lock's registered model at once: MLflow's SQL store refuses the
    second insert, then looks the model up to say it exists and, not seeing it yet, raises
    RESOURCE_DOES_NOT_EXIST (seen in a full run: the thread died instead of waiting)."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    from tasks.adapters import audit_store

    class RacingClient:
        def __init__(self) -> None:
            self.creates = 0
            self.deleted: list[str] = []

        def create_registered_model(self, name: str, description: str) -> None:
            self.creates += 1
            if self.creates == 1:
                raise MlflowException(f"Registered Model with name={name} not found",
                                      error_code=RESOURCE_DOES_NOT_EXIST)

        def get_registered_model(self, name: str):
            raise MlflowException("not found", error_code=RESOURCE_DOES_NOT_EXIST)

        def delete_registered_model(self, name: str) -> None:
            self.deleted.append(name)

    class Reg:
        client = RacingClient()

    monkeypatch.setattr(audit_store.time, "sleep", lambda s: None)
    with audit_store.model_lock(Reg(), "aud", timeout_s=30):
        assert Reg.client.creates == 2  # waited, then took it
    assert Reg.client.deleted == ["mlops-lock.aud"]
