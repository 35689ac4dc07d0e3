"""The decision-threshold rule of a binary model, as configured (`threshold:` in the YAML)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CostSpec(_Strict):
    fp: float = Field(gt=0, description="cost of flagging a negative (false positive)")
    fn: float = Field(gt=0, description="cost of missing a positive (false negative)")


class ThresholdSpec(_Strict):
    """Binary models: how the decision threshold on P(positive) is chosen, on the validation
    split (never the test split). Exactly one rule."""

    fixed: float | None = Field(default=None, gt=0, lt=1, description="use this cut-off")
    optimize: Literal["f1"] | None = Field(default=None, description="maximise F1")
    precision_at_recall: float | None = Field(
        default=None, gt=0, le=1, description="best precision with at least this recall")
    cost: CostSpec | None = Field(default=None, description="least total cost fp*FP + fn*FN")

    @model_validator(mode="after")
    def _one_rule(self) -> ThresholdSpec:
        given = [k for k in ("fixed", "optimize", "precision_at_recall", "cost")
                 if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of fixed, optimize, precision_at_recall, cost"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self

    def describe(self) -> str:
        if self.fixed is not None:
            return f"fixed {self.fixed:g}"
        if self.optimize:
            return f"optimize {self.optimize} on validation"
        if self.precision_at_recall is not None:
            return f"best precision at recall >= {self.precision_at_recall:g} on validation"
        assert self.cost is not None
        return f"least cost (fp {self.cost.fp:g}, fn {self.cost.fn:g}) on validation"
