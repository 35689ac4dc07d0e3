"""The rule one model's production changes are judged by (built in tasks/core/policy_config.py
from the organisation's policy and the model's YAML). Pure data."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

# where an approver's identity comes from: a typed name, their own GitLab token, or GitLab's own
# record of a deployment approval (protected environment, `POST deployments/:id/approval`)
IdentitySource = Literal["gitlab", "declared", "gitlab-environment"]
VERIFIED = ("gitlab", "gitlab-environment")


def stricter_identity(*sources: str) -> IdentitySource:
    """The strictest of several sources: GitLab's deployment approvals, then a GitLab token."""
    for source in ("gitlab-environment", "gitlab"):
        if source in sources:
            return source  # type: ignore[return-value]
    return "declared"


class Governance(BaseModel):
    """What a production change of one model needs: the policy's approval floor tightened by
    the model's deploy.production block, and the hashes of both texts (kept in the intent)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    required: bool
    identity: IdentitySource
    approvers: list[str] | None
    min_approvals: int
    four_eyes: bool
    signed_records: bool
    protected_ref: bool
    policy_sha256: str
    config_sha256: str

    def may_approve(self, who: str) -> bool:
        return not self.approvers or who in self.approvers
