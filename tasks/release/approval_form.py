"""The form a person answers to promote a version to production (a Prefect RunInput): an
answer that is empty, blank or without a reason for a rejection is never a decision."""

from __future__ import annotations

from typing import Literal

from prefect.input import RunInput
from pydantic import ConfigDict, Field, field_validator, model_validator


class ApprovalForm(RunInput):
    """Promote this version to production? Nothing is preset: choose, and say who you are."""

    # Seen in Chromium: listing comment as required (its default "" is sent untouched, so an
    # approval still needs none) drops the UI's "(Optional)" from its label; minLength instead
    # of a regex makes a comment-less rejection "Validation failed for field 'comment' … ''
    # should be non-empty", not "'' does not match '\\S'". A blank-only comment is refused by
    # _rules, and the run asks again.
    model_config = ConfigDict(json_schema_extra={
        "required": ["decision", "approver", "comment"],
        "if": {"properties": {"decision": {"const": "reject"}}, "required": ["decision"]},
        "then": {"properties": {"comment": {"minLength": 1}}},
    })
    decision: Literal["approve", "reject"] = Field(
        ..., description="approve: promote to production now (freeze windows and post-deploy "
                         "checks apply); reject: stop this deployment.")
    # no regex: a blank-only name would be refused as "'  ' does not match '\\S'"; _rules
    # refuses it in words instead, and the next question says why
    approver: str = Field(..., min_length=1,
                          description="Your GitLab username; it goes to the audit trail.")
    comment: str = Field(
        "", title="Comment (required to reject)",
        description="Why you decide; it goes to the audit trail. Approving needs none; a "
                    "rejection is refused without one.")

    @field_validator("approver", "comment")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @model_validator(mode="after")
    def _rules(self) -> ApprovalForm:
        if not self.approver:
            raise ValueError("enter your name as the approver: a blank one is not an answer")
        if self.decision == "reject" and not self.comment:
            raise ValueError("say why you reject in the comment: a rejection needs one")
        return self


class DeclaredApprovalForm(ApprovalForm):
    """Promote this version to production? Nothing is preset: choose, and say who you are."""

    approver: str = Field(..., min_length=1,
                          description="Your name; it goes to the audit trail as typed (this "
                                      "model's approvers are declared, not verified).")


def form_for(identity: str) -> type[ApprovalForm]:
    """The form whose approver field says what this model's identity asks for."""
    return DeclaredApprovalForm if identity == "declared" else ApprovalForm
