"""The production state machine on its own: intent → alias → checks → completion, the automatic
move back, and how the next command finishes an interrupted change. In-memory registry and
trail, so each transition is asserted directly (the integration and e2e tiers run it against
real stores)."""

from __future__ import annotations

import pytest

from tasks.adapters.audit_trail import event, unfinished
from tasks.contracts.release import Identity
from tasks.core.audit_event import AuditEvent
from tasks.core.errors import DeployError
from tasks.release.production import finish_interrupted, move_checked

ALICE = Identity(username="alice")


class Aliases:
    """The registry's alias table, and a log of every move."""

    def __init__(self, **aliases: str):
        self.aliases: dict[str, str] = dict(aliases)
        self.moves: list[tuple[str, str | None]] = []

    def move_alias(self, name: str, alias: str, version: str | None) -> None:
        self.moves.append((alias, version))
        if version is None:
            self.aliases.pop(alias, None)
        else:
            self.aliases[alias] = version

    def alias_version(self, name: str, alias: str) -> str | None:
        return self.aliases.get(alias)


class Trail:
    def __init__(self, *records: AuditEvent):
        self.records = [dict(r.record(), seq=str(i + 1)) for i, r in enumerate(records)]

    def write(self, record: AuditEvent) -> None:
        self.records.append(dict(record.record(), seq=str(len(self.records) + 1)))

    def events(self) -> list[dict[str, str]]:
        return list(self.records)

    def actions(self) -> list[str]:
        return [r["action"] for r in self.records]


def passing(registry, cfg, version) -> None:
    return None


def failing(registry, cfg, version) -> None:
    raise DeployError("predictions out of range\nsecond line never shown")


class Rule:
    policy_sha256 = "p" * 64
    config_sha256 = "c" * 64


@pytest.fixture
def cfg(make_config):
    return make_config(name="fraud")


def test_a_promotion_writes_intent_then_moves_then_completes(cfg):
    registry, trail = Aliases(champion="1"), Trail()
    move_checked(registry, cfg, trail, "promotion", "1", "2", ALICE, "ok", "run-1", passing,
                 Rule())
    assert trail.actions() == ["promotion-intent", "promoted"]
    assert registry.moves == [("champion", "2")]
    intent, done = trail.records
    assert (intent["from_version"], intent["to_version"]) == ("1", "2")
    assert intent["policy_sha256"] == Rule.policy_sha256
    assert intent["config_sha256"] == Rule.config_sha256
    assert (done["actor"], done["identity"], done["flow_run_id"]) == (
        "alice", "alice (declared, unverified)", "run-1")
    assert unfinished(trail.events()) is None


def test_a_failed_check_moves_the_alias_back_and_says_so(cfg):
    registry, trail = Aliases(champion="1"), Trail()
    with pytest.raises(DeployError, match=r"fraud v2 failed its post-deploy checks "
                       r"\(predictions out of range\); rolled back to v1"):
        move_checked(registry, cfg, trail, "promotion", "1", "2", ALICE, "", None, failing)
    assert registry.moves == [("champion", "2"), ("champion", "1")]
    assert registry.aliases["champion"] == "1"
    assert trail.actions() == ["promotion-intent", "rolled-back"]
    back = trail.records[-1]
    assert (back["from_version"], back["to_version"], back["actor"]) == ("2", "1", "automatic")
    assert back["reason"] == "predictions out of range"
    assert unfinished(trail.events()) is None


def test_a_first_champion_that_fails_leaves_no_champion(cfg):
    registry, trail = Aliases(), Trail()
    with pytest.raises(DeployError, match="rolled back to no champion"):
        move_checked(registry, cfg, trail, "promotion", None, "1", ALICE, "", None, failing)
    assert "champion" not in registry.aliases


def test_a_rollback_completes_as_rolled_back(cfg):
    registry, trail = Aliases(champion="2"), Trail()
    move_checked(registry, cfg, trail, "rollback", "2", "1", ALICE, "bad week", None, passing)
    assert trail.actions() == ["rollback-intent", "rolled-back"]
    assert registry.aliases["champion"] == "1"


def test_nothing_unfinished_is_left_alone(cfg):
    registry = Aliases(champion="2")
    trail = Trail(event("promotion-intent", "production", "1", "2", "alice"),
                  event("promoted", "production", "1", "2", "alice"))
    assert finish_interrupted(registry, cfg, trail, failing) is None
    assert registry.moves == [] and len(trail.records) == 2


def test_an_intent_whose_alias_never_moved_is_abandoned_and_nothing_moves(cfg):
    registry = Aliases(champion="1")
    trail = Trail(event("promotion-intent", "production", "1", "2", "alice"))
    said = finish_interrupted(registry, cfg, trail, passing)
    assert said == "promotion of v2 interrupted (record 1): the alias had not moved; abandoned"
    assert registry.moves == []
    assert trail.actions()[-1] == "promotion-abandoned"
    assert unfinished(trail.events()) is None


def test_an_interrupted_move_whose_checks_pass_now_is_completed_in_its_deciders_name(cfg):
    registry = Aliases(champion="2")
    trail = Trail(event("promotion-intent", "production", "1", "2", "alice", "ok", "run-9",
                        identity="alice (declared, unverified)"))
    said = finish_interrupted(registry, cfg, trail, passing)
    assert said == "promotion of v2 interrupted (record 1): checks passed now; completed"
    done = trail.records[-1]
    assert (done["action"], done["actor"], done["comment"], done["flow_run_id"]) == (
        "promoted", "alice", "ok", "run-9")
    assert registry.moves == []


def test_an_interrupted_move_whose_checks_fail_now_goes_back(cfg):
    registry = Aliases(champion="2")
    trail = Trail(event("promotion-intent", "production", "1", "2", "alice"))
    said = finish_interrupted(registry, cfg, trail, failing)
    assert said == ("promotion of v2 interrupted (record 1): its checks failed now, "
                    "so @champion went back to v1")
    assert registry.aliases["champion"] == "1"
    back = trail.records[-1]
    assert (back["action"], back["from_version"], back["to_version"]) == ("rolled-back", "2", "1")
    assert unfinished(trail.events()) is None
