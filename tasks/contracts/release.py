"""What the release stages hand each other and report: smoke tests, approvals, outcomes."""

from __future__ import annotations

from pydantic import BaseModel


class SmokeReport(BaseModel):
    passed: bool
    checks: list[str]
    p95_ms: float | None = None

    @property
    def failures(self) -> list[str]:
        return [c for c in self.checks if c.startswith("FAIL")]


class Approval(BaseModel):
    approver: str
    approved: bool
    comment: str = ""


class DeployResult(BaseModel):
    model: str
    version: str
    staging: str
    production: str
    champion: str | None
    message: str


class PipelineResult(BaseModel):
    """What one training pipeline run ends with (and its deployment, when it deployed)."""

    model: str
    version: str
    metric: str
    value: float | None
    gate: str
    run_id: str | None
    reused: bool
    deployment: DeployResult | None = None
