"""The organisation's compliance policy (configs/policy.yaml, or MLOPS_POLICY): required tags,
allowed values, and per environment the classifications it may run and the checks a version
must carry. Owned apart from the model configs; a model YAML may add requirements, never remove
these. Pure: parsing, hashing and the rules, no registry."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tasks.core.audit_event import Action
from tasks.core.chain import Key
from tasks.core.config import ModelConfig, RegistrySpec, _format_pydantic, read_mapping
from tasks.core.errors import ConfigError, first_of
from tasks.core.governance import Governance, IdentitySource, stricter_identity
from tasks.core.settings import Settings

Environment = Literal["staging", "production"]
ENVIRONMENTS: tuple[Environment, ...] = ("staging", "production")
# a check's result on a version: the version tag `check.<name>` (set at registration) or a
# `check-recorded` audit record (`mlops check-off`, e.g. from a CI security-scan job)
CHECK_TAG = "check."
PASSED = "passed"
COMPUTED_CHECKS = {
    "compliance_validated": "the version's tags satisfied the policy when it was registered",
    "data_validated": "the training data passed its validation report",
    "gate_passed": "the evaluation gate passed",
}
_NAME = r"^[a-z][a-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApprovalRule(_Strict):
    """Who must approve a change of this environment: the organisation's floor. A model YAML
    may tighten it (more approvals, fewer approvers, a verified identity), never loosen it."""

    required: bool = Field(default=True, description="a person must approve every change")
    identity: IdentitySource = Field(
        default="declared", description="gitlab: approvers prove who they are with their own "
                                        "GitLab token; gitlab-environment: GitLab's deployment "
                                        "approvals on the protected production environment "
                                        "decide; declared: a typed name (laptops, demos)")
    approvers: list[str] | None = Field(
        default=None, description="GitLab usernames who may approve (none listed: anyone the "
                                  "other rules allow)")
    min_approvals: int = Field(default=1, ge=1, le=5,
                               description="distinct approvers a change needs")
    four_eyes: bool = Field(default=True, description="who built a version or wrote its commit "
                                                      "may not approve it")
    signed_records: bool = Field(default=True, description="no change without MLOPS_AUDIT_KEY: "
                                                           "every record is signed")
    protected_ref: bool = Field(default=True, description="in GitLab CI, changes only from "
                                                          "protected refs")


class EnvironmentRule(_Strict):
    classifications: list[str] = Field(
        min_length=1, description="classification values a version may carry to run here")
    checks: list[str] = Field(default_factory=list,
                              description="checks that must have passed before deployment here")
    approval: ApprovalRule = Field(default_factory=ApprovalRule)

    @model_validator(mode="after")
    def _check_names(self) -> EnvironmentRule:
        import re

        bad = [c for c in self.checks if not re.match(_NAME, c)]
        if bad:
            raise ValueError(f"check name {bad[0]!r} must be lower_snake_case")
        return self


class Environments(_Strict):
    staging: EnvironmentRule
    production: EnvironmentRule


class Policy(_Strict):
    version: str = Field(min_length=1, description="the policy's own version, shown in reports")
    required_tags: list[str] = Field(min_length=1)
    allowed_values: dict[str, list[str]] = Field(default_factory=dict)
    environments: Environments

    @field_validator("version", mode="before")
    @classmethod
    def _number_is_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) \
            else value

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        if "classification" not in self.required_tags:
            raise ValueError("required_tags must include classification (environments rule on it)")
        allowed = self.allowed_values.get("classification")
        for env in ENVIRONMENTS:
            rule = self.rule(env)
            stray = [c for c in rule.classifications if allowed and c not in allowed]
            if stray:
                raise ValueError(f"environments.{env}.classifications: {stray[0]!r} is not in "
                                 f"allowed_values.classification ({', '.join(allowed or [])})")
        return self

    def rule(self, environment: str) -> EnvironmentRule:
        return getattr(self.environments, environment)


class LoadedPolicy(_Strict):
    """A policy with where it came from and the hash of its text (what versions record)."""

    policy: Policy
    origin: str
    sha256: str

    @property
    def label(self) -> str:
        return f"policy {self.policy.version} ({self.origin}, sha256 {self.sha256[:12]})"


@dataclass(frozen=True)
class Signed:
    """What the stages that judge and sign a release (register, promote) are handed as one
    argument: the settings, the policy and the audit key their process read once where it
    started (`Runtime.signed`). Here, beside the policy, so that a stage importing it stays
    within four layers."""

    settings: Settings
    policy: LoadedPolicy
    key: Key = field(repr=False)


def parse_policy(text: str, origin: str = "<policy>") -> LoadedPolicy:
    """Parse and validate the policy text; every problem is one ConfigError naming the key."""
    raw = read_mapping(text, origin, "policy YAML")
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        # a misspelt key is also a missing one: name the misspelling, it is what to fix
        typo = [e for e in exc.errors() if e["type"] == "extra_forbidden"]
        problem = (f"unknown key {'.'.join(str(p) for p in typo[0]['loc'])!r}" if typo
                   else _format_pydantic(exc))
        raise ConfigError(f"{origin}: policy {problem}") from None
    return LoadedPolicy(policy=policy, origin=origin,
                        sha256=hashlib.sha256(text.encode()).hexdigest())


def load_policy(path: Path) -> LoadedPolicy:
    if not path.is_file():
        raise ConfigError(f"policy file {path} does not exist: set MLOPS_POLICY to the "
                          "organisation's policy.yaml")
    return parse_policy(path.read_text(), origin=str(path))


def tag_problems(policy: Policy, tags: Mapping[str, str], extra_required: Sequence[str] = ()
                 ) -> list[str]:
    """What is wrong with a set of tags: each line names the rule, the tag and what is allowed."""
    problems = []
    for tag in [*policy.required_tags, *[t for t in extra_required
                                         if t not in policy.required_tags]]:
        if not tags.get(tag):
            source = "policy" if tag in policy.required_tags else "registry.required_tags"
            allowed = policy.allowed_values.get(tag)
            problems.append(f"required tag {tag!r} is missing ({source})"
                            + (f"; allowed values: {', '.join(allowed)}" if allowed else ""))
    for tag, allowed in policy.allowed_values.items():
        value = tags.get(tag)
        if value and value not in allowed:
            problems.append(f"tag {tag}={value!r} is not allowed (allowed_values.{tag}: "
                            f"{', '.join(allowed)})")
    return problems


def config_problems(policy: Policy, spec: RegistrySpec) -> list[str]:
    """A model's registry block against the policy: the policy's tags plus the model's own."""
    return tag_problems(policy, spec.tags, spec.required_tags)


def environment_problems(policy: Policy, environment: str, tags: Mapping[str, str],
                         checks: Mapping[str, str]) -> list[str]:
    """Why a version may not run in `environment` under this policy ([] when it may)."""
    rule = policy.rule(environment)
    problems = tag_problems(policy, tags)
    classification = tags.get("classification", "")
    if classification and classification not in rule.classifications:
        problems.append(f"environments.{environment}.classifications: classification "
                        f"{classification!r} may not run in {environment} (allowed: "
                        f"{', '.join(rule.classifications)})")
    for check in rule.checks:
        result = checks.get(check)
        if result != PASSED:
            state = f"result {result!r}" if result else "not recorded"
            problems.append(f"environments.{environment}.checks: check {check!r} has not passed "
                            f"({state}; record it with `mlops check-off`)"
                            if check not in COMPUTED_CHECKS else
                            f"environments.{environment}.checks: check {check!r} has not passed "
                            f"({state})")
    return problems


def version_checks(tags: Mapping[str, str], events: Sequence[Mapping[str, str]] = (),
                   version: str | None = None) -> dict[str, str]:
    """Each check's result on a version: the computed ones from its `check.*` tags (pass the
    sealed facts for a decision), external ones only from `check-recorded` audit records (a
    later record overrides an earlier one): a `check.*` tag written by hand counts for nothing."""
    checks = {k.removeprefix(CHECK_TAG): v for k, v in tags.items()
              if k.startswith(CHECK_TAG) and k.removeprefix(CHECK_TAG) in COMPUTED_CHECKS}
    for record in events:
        if record.get("action") == Action.CHECK_RECORDED and record.get("to_version") == version:
            checks[record.get("check", "")] = record.get("result", "")
    return checks


def registration_tags(loaded: LoadedPolicy, computed: Mapping[str, bool]) -> dict[str, str]:
    """What a version carries as lineage: the policy's version and hash and each check's result."""
    return {"policy_version": loaded.policy.version, "policy_sha256": loaded.sha256,
            **{f"{CHECK_TAG}{name}": PASSED if ok else "failed" for name, ok in computed.items()}}


def require_compliant_config(loaded: LoadedPolicy, name: str, spec: RegistrySpec) -> None:
    """Refuse a model whose registry block does not satisfy the policy (exit 2, one line)."""
    problems = config_problems(loaded.policy, spec)
    if problems:
        raise ConfigError(f"{name}: {first_of(problems)}; set by {loaded.label}")


def deployment_refusal(loaded: LoadedPolicy, environment: str, version: str,
                       tags: Mapping[str, str], events: Sequence[Mapping[str, str]]) -> str | None:
    """Why the current policy refuses this version in `environment` (the rule named), or None."""
    problems = environment_problems(loaded.policy, environment, tags,
                                    version_checks(tags, events, version))
    if not problems:
        return None
    return f"{loaded.label} refuses v{version} in {environment}: {first_of(problems)}"


def governance(loaded: LoadedPolicy, cfg: ModelConfig) -> Governance:
    """The stricter of the policy and the model's YAML on every point: a YAML can ask for a
    verified identity, fewer approvers or more approvals, never switch approval off."""
    floor, spec = loaded.policy.rule("production").approval, cfg.deploy.production
    approvers = floor.approvers
    if spec.approvers is not None:
        approvers = ([a for a in spec.approvers if a in floor.approvers]
                     if floor.approvers is not None else list(spec.approvers))
        if not approvers:
            raise ConfigError(f"{cfg.name}: deploy.production.approvers lists nobody "
                              f"{loaded.label} allows (its approvers: "
                              f"{', '.join(floor.approvers or [])})")
    return Governance(
        model=cfg.name, required=floor.required or spec.approval == "required",
        identity=stricter_identity(floor.identity, spec.identity),
        approvers=approvers,
        min_approvals=max(floor.min_approvals, spec.min_approvals), four_eyes=floor.four_eyes,
        signed_records=floor.signed_records, protected_ref=floor.protected_ref,
        policy_sha256=loaded.sha256, config_sha256=cfg.config_hash())
