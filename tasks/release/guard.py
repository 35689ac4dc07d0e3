"""What production must be before anything reads or changes it: its alias where the signed
trail says, a key to sign with, a protected ref in CI, and the facts sealed at registration
still on the version. Every command that scores, monitors, shows or moves production asks."""

from __future__ import annotations

import re
from collections.abc import Mapping

from tasks.adapters import audit_store
from tasks.adapters.audit_store import former_champions
from tasks.adapters.mlflow_registry import Registry
from tasks.contracts.release import Identity
from tasks.core.audit_event import Action
from tasks.core.chain import Key
from tasks.core.errors import ConfigError, PolicyRefused, TrailMismatch, first_of
from tasks.core.governance import Governance
from tasks.core.sealed import edited, registered_facts, unsealed_refusal


def _v(version: str | None) -> str:
    return f"v{version}" if version else "nothing"


def alias_as_recorded(registry: Registry, model: str, alias: str,
                      events: list[dict[str, str]]) -> str | None:
    """The version the alias points at, when the trail says the same; TrailMismatch else."""
    live = registry.alias_version(model, alias)
    recorded = audit_store.alias_from(events, alias)
    move = audit_store.newest_move(events, alias) or {}
    if move.get("action", "").endswith("-intent") and live == (move.get("from_version") or None):
        return live  # a move under way (or interrupted before the alias moved): not yet done
    if live != recorded:
        raise TrailMismatch(
            f"{model}@{alias} points at {_v(live)} but the signed trail says {_v(recorded)}: "
            f"it was moved outside the pipeline, so nothing was done; put it back with "
            f"`mlops audit realign {model}` (needs MLOPS_AUDIT_KEY) and promote through the "
            "pipeline")
    return live


def require_production_change(rule: Governance, key: Key, ci: Mapping[str, str]
                              ) -> None:
    """No change without a key when the policy wants signed records, and in GitLab CI only
    from a protected ref (an MR's pipeline runs the MR's own files)."""
    if rule.signed_records and not key:
        raise ConfigError(f"no production change of {rule.model} without MLOPS_AUDIT_KEY: the "
                          "policy (signed_records) wants every record signed; in GitLab CI it "
                          "is a protected, masked CI/CD variable")
    if rule.protected_ref and ci.get("GITLAB_CI") == "true" \
            and ci.get("CI_COMMIT_REF_PROTECTED") != "true":
        raise PolicyRefused(f"production changes of {rule.model} run only on protected refs "
                            f"({ci.get('CI_COMMIT_REF_NAME', 'this ref')} is not protected)")


def sealed_facts(model: str, version: str, tags: Mapping[str, str],
                 events: list[dict[str, str]]) -> tuple[dict[str, str] | None, str | None]:
    """(the facts sealed at registration, why they cannot be used): none sealed, or a tag that
    no longer says what was sealed."""
    facts = registered_facts(events, version)
    if facts is None:
        return None, unsealed_refusal(model, version)
    changed = edited(facts, tags)
    if changed:
        return facts, f"v{version}: {first_of(changed)}"
    return facts, None


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def not_a_promotion(events: list[dict[str, str]], model: str, version: str,
                    champion: str | None, alias: str) -> str | None:
    """A promotion only moves production forward: the champion itself, a former champion or a
    version older than the champion goes back through rollback, and says so."""
    if version == champion:
        return f"v{version} is {alias} already: nothing to promote"
    if version in former_champions(events, alias):
        return (f"v{version} was {alias} before: going back to it is a rollback "
                f"(`mlops rollback {model} {version}`)")
    if champion and _version_key(version) < _version_key(champion):
        return (f"v{version} is older than {alias} v{champion}: promoting it would roll "
                "production back; retrain for a newer version")
    return None


def approvals_short(rule: Governance, events: list[dict[str, str]], version: str,
                    approver: Identity) -> str | None:
    """Why the approvals given so far (since the version was last staged) plus this one are
    fewer than the rule's minimum of distinct people, or None."""
    given = {approver.username, *recorded_approvers(events, version)}
    if len(given) >= rule.min_approvals:
        return None
    return (f"{rule.model} needs {rule.min_approvals} distinct approvers, v{version} has "
            f"{len(given)} ({', '.join(sorted(given))}); each approves in the deploy run")


def recorded_approvers(events: list[dict[str, str]], version: str) -> list[str]:
    """Who approved `version` (an `approval-given` record) since its newest staging."""
    found: list[str] = []
    for record in events:
        if record.get("to_version") != version:
            continue
        if record.get("action") == Action.STAGED:
            found = []
        elif record.get("action") == Action.APPROVAL_GIVEN:
            found.append(record.get("actor", ""))
    return [who for who in found if who]
