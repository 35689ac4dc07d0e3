"""The facts a production decision relies on, sealed when a version is registered: who built it,
who wrote its commit, its compliance tags, the checks computed then and its digests. They go
into the signed `registered` audit record; a decision reads them from there and refuses a
version whose tags no longer say the same. Pure functions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from tasks.core.audit_event import Action

REGISTERED = Action.REGISTERED
FACT = "fact."  # record field prefix: record fields (action, environment, …) never collide
# lineage and digests every version carries when the pipeline registers it
LINEAGE = ("built_by", "commit_author", "git_commit", "config_hash", "artifact_sha256",
           "manifest_sha256", "policy_sha256", "policy_version", "run_key")


def fact_keys(tags: Mapping[str, str], compliance_tags: Iterable[str]) -> list[str]:
    """Which of a version's tags are sealed: lineage, compliance tags and every check."""
    wanted = {*LINEAGE, *compliance_tags}
    return sorted(k for k in tags if k in wanted or k.startswith("check."))


def facts_fields(tags: Mapping[str, str], compliance_tags: Iterable[str]) -> dict[str, str]:
    """The record fields that seal a version's facts (an absent builder is sealed as absent)."""
    fields = {f"{FACT}{k}": str(tags[k]) for k in fact_keys(tags, compliance_tags)}
    fields.setdefault(f"{FACT}built_by", "")
    return fields


def registered_facts(events: Sequence[Mapping[str, str]], version: str) -> dict[str, str] | None:
    """The facts sealed when `version` was registered (the newest such record), or None."""
    for record in reversed(events):
        if record.get("action") == REGISTERED and record.get("to_version") == version:
            return {k.removeprefix(FACT): v for k, v in record.items() if k.startswith(FACT)}
    return None


def edited(facts: Mapping[str, str], tags: Mapping[str, str]) -> list[str]:
    """Each sealed fact the version's tags no longer say, one line each."""
    return [f"tag {key}={tags.get(key)!r} was {'removed' if key not in tags else 'edited'} "
            f"after registration (sealed: {value!r})"
            for key, value in sorted(facts.items()) if value and tags.get(key) != value]


def unsealed_refusal(model: str, version: str) -> str:
    return (f"{model} v{version} has no sealed registration record in its audit trail "
            "(registered outside the pipeline, or before records were sealed): retrain it to "
            "register a version whose facts are signed")
