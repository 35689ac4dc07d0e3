"""What the release stages hand each other and report: smoke tests, approvals, outcomes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SmokeReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    passed: bool
    checks: list[str]
    p95_ms: float | None = None

    @property
    def failures(self) -> list[str]:
        return [c for c in self.checks if c.startswith("FAIL")]


class Identity(BaseModel):
    """Who decided: a GitLab user proven by their own token (or GitLab's record of their
    answer), or a name someone typed (declared, unverified)."""

    model_config = ConfigDict(frozen=True)

    username: str
    user_id: int | None = None
    name: str = ""
    verified: bool = False
    via: str = "declared"  # "gitlab-token", "gitlab-environment", "policy", "declared"

    def label(self) -> str:
        if self.verified:
            return f"{self.username} (GitLab user {self.user_id}, verified)"
        return f"{self.username} (declared, unverified)" if self.via == "declared" else self.username


class Approval(BaseModel):
    model_config = ConfigDict(frozen=True)

    approver: Identity
    approved: bool
    comment: str = ""


class DeployResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str
    version: str
    staging: str
    production: str
    champion: str | None
    message: str
    approval: Approval | None = None

    @classmethod
    def not_offered(cls, model: str, version: str, champion: str | None, why: str
                    ) -> DeployResult:
        """The champion itself, or going back: never offered as a promotion."""
        return cls(model=model, version=version, staging="skipped",
                   production="already champion" if champion == version else "not offered",
                   champion=champion, message=why)

    @classmethod
    def from_a_path(cls, model: str, version: str, champion: str | None) -> DeployResult:
        return cls(model=model, version=version, staging="passed", production="not offered",
                   champion=champion,
                   message=f"{model} v{version} staged; trained from a YAML path, which never "
                           f"promotes: promote it with `mlops promote {model} "
                           f"{version}` (judged by configs/models/{model}.yaml and the policy)")

    @classmethod
    def awaiting(cls, model: str, version: str, champion: str | None) -> DeployResult:
        return cls(model=model, version=version, staging="passed",
                   production="awaiting approval", champion=champion,
                   message=f"{model} v{version} staged; promote it with: mlops promote {model} "
                           f"{version} --as NAME")

    @classmethod
    def promoted(cls, model: str, version: str, alias: str, previous: str | None,
                 approval: Approval) -> DeployResult:
        who = approval.approver.label()
        return cls(model=model, version=version, staging="passed",
                   production=f"promoted by {who}", champion=version, approval=approval,
                   message=f"{model}@{alias}: v{previous or '-'} → v{version}, approved by {who}")


class Proposal(BaseModel):
    """A version proposed for production, judged against production now (the trail's
    champion): `refusal` says why it is not offered (the champion itself, or going back)."""

    model_config = ConfigDict(frozen=True)
    champion: str | None
    refusal: str | None = None


class PipelineResult(BaseModel):
    """What one training pipeline run ends with (and its deployment, when it deployed)."""

    model_config = ConfigDict(frozen=True)

    model: str
    version: str
    metric: str
    value: float | None
    gate: str
    run_id: str | None
    reused: bool
    deployment: DeployResult | None = None
