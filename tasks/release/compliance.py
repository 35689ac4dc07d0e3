"""Each registered version against the current policy: what still satisfies it, what no longer
does (a policy change never re-classifies a version silently), and its compliance report with
the approvals so far."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tasks.adapters.mlflow_registry import Registry
from tasks.adapters.model_version import ModelVersionRef
from tasks.core.policy_config import (
    ENVIRONMENTS,
    LoadedPolicy,
    environment_problems,
    tag_problems,
    version_checks,
)
from tasks.reports.compliance import compliance_html

# which environment each alias puts a version in (the challenger is not deployed anywhere)
ALIAS_ENVIRONMENT = {"staging": "staging", "champion": "production"}


@dataclass(frozen=True)
class VersionStatus:
    version: str
    aliases: list[str]
    registered_under: str  # policy version at registration, or "" when none was recorded
    policy_changed: bool
    environments: dict[str, list[str]]  # environment -> why the policy refuses it there
    problems: list[str] = field(default_factory=list)  # why it is non-compliant now

    @property
    def compliant(self) -> bool:
        return not self.problems


def version_status(loaded: LoadedPolicy, ref: ModelVersionRef, events: list[Mapping[str, str]],
                   aliases: Mapping[str, str | None]) -> VersionStatus:
    """Non-compliant: its tags break the policy, or it runs (by alias) in an environment whose
    rules now refuse it, or it was registered under no policy at all."""
    checks = version_checks(ref.tags, events, ref.version)
    envs: dict[str, list[str]] = {env: environment_problems(loaded.policy, env, ref.tags, checks)
            for env in ENVIRONMENTS}
    held = sorted(a for a, v in aliases.items() if v == ref.version)
    problems = list(tag_problems(loaded.policy, ref.tags))
    for alias in held:
        env = ALIAS_ENVIRONMENT.get(alias)
        problems += [f"@{alias} runs it in {env}: {p}" for p in envs.get(env, [])
                     if p not in problems] if env else []
    registered = ref.tags.get("policy_sha256", "")
    if not registered:
        problems.append("registered without a policy (no policy_sha256 tag)")
    return VersionStatus(version=ref.version, aliases=held,
                         registered_under=ref.tags.get("policy_version", ""),
                         policy_changed=bool(registered) and registered != loaded.sha256,
                         environments=envs, problems=problems)


def versions_status(registry: Registry, loaded: LoadedPolicy, model: str,
                    events: list[Mapping[str, str]], aliases: Mapping[str, str | None]
                    ) -> list[VersionStatus]:
    return [version_status(loaded, ref, events, aliases) for ref in registry.versions(model)]


def current_report(registry: Registry, loaded: LoadedPolicy, ref: ModelVersionRef,
                   events: list[Mapping[str, str]]) -> str:
    """The version's compliance report now: current policy, checks (recorded ones included),
    the audit records about it so far, and its model card from the run."""
    tags = ref.tags
    checks = version_checks(tags, events, ref.version)
    params = registry.run_params(ref.run_id) if ref.run_id else {}
    metrics = registry.run_metrics(ref.run_id) if ref.run_id else {}
    metric = tags.get("gate_metric", "")
    card = (registry.run_text(ref.run_id, "model/model_card.md") if ref.run_id else None)
    mine = [r for r in events if ref.version in (r.get("to_version"), r.get("from_version"))]
    return compliance_html(
        model=ref.name, version=ref.version, tags=tags, policy_version=loaded.policy.version,
        policy_sha256=loaded.sha256, checks=checks,
        environments={env: environment_problems(loaded.policy, env, tags, checks)
                      for env in ENVIRONMENTS},
        validation=[f"{params.get('rows', '?')} rows, {params.get('features', '?')} features; "
                    f"data_validated: {checks.get('data_validated', 'not recorded')}"],
        gate=[f"{metric} {tags.get('gate_value', '?')} (gate_passed: "
              f"{checks.get('gate_passed', 'not recorded')})",
              *[f"{k}: {v:.6g}" for k, v in sorted(metrics.items())
                if k in (f"test_{metric}", f"champion_{metric}")]],
        records=mine, card=card or "(model card not found in the run)",
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"))
