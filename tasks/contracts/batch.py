"""What batch scoring and monitoring hand on and report: profiles, summaries, drift reports."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

PREDICTION = "__prediction__"
OTHER = "(unseen)"
MISSING = "(missing)"
DRIFT_EVENT = "mlops.model.drift-detected"
Verdict = Literal["no-drift", "drift", "insufficient"]


class ColumnProfile(BaseModel):
    """Counts per bin: numeric columns use quantile cut points of the training data, categorical
    ones the training categories plus one bin for values never seen in training; the last bin
    counts missing values."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["numeric", "categorical"]
    edges: list[float] = []
    categories: list[str] = []
    counts: list[int]

    @property
    def rows(self) -> int:
        return int(sum(self.counts))

    def fractions(self) -> np.ndarray:
        counts = np.asarray(self.counts, dtype=float)
        return counts / counts.sum() if counts.sum() else counts

    def labels(self) -> list[str]:
        if self.kind == "categorical":
            return [*self.categories, OTHER, MISSING]
        edges = [f"{e:.3g}" for e in self.edges]
        if not edges:
            return ["all", MISSING]
        middle = [f"{a}–{b}" for a, b in zip(edges, edges[1:], strict=False)]
        return [f"< {edges[0]}", *middle, f">= {edges[-1]}", MISSING]

    def empty(self) -> ColumnProfile:
        return self.model_copy(update={"counts": [0] * len(self.counts)})


class Profile(BaseModel):
    """A model's data as seen at registration (or a batch as seen later), column by column."""

    model_config = ConfigDict(frozen=True)

    rows: int
    columns: dict[str, ColumnProfile]
    metric: str | None = None
    metric_value: float | None = None
    attributions: dict[str, float] = {}  # mean |SHAP| per feature (training rows, or the batch)

    @property
    def prediction(self) -> ColumnProfile:
        return self.columns[PREDICTION]


class Observed(BaseModel):
    """A batch seen through the reference profile's bins, plus labelled performance if any."""

    model_config = ConfigDict(frozen=True)

    profile: Profile
    metric: str | None = None
    metric_value: float | None = None


class AttributionDrift(BaseModel):
    """A feature's share of the model's explanation (mean |SHAP|) at training and in a batch."""

    model_config = ConfigDict(frozen=True)

    name: str
    reference_share: float
    current_share: float
    moved: bool

    @property
    def change(self) -> float:
        return self.current_share - self.reference_share


class ColumnDrift(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    kind: str
    psi: float
    status: Literal["stable", "watch", "drift"]
    noise_bound: float | None = None  # PSI sampling noise reaches at the chosen significance


class DriftReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str
    version: str
    input: str
    rows: int
    verdict: Verdict
    message: str
    psi_threshold: float
    columns: list[ColumnDrift] = []
    metric: str | None = None
    metric_reference: float | None = None
    metric_current: float | None = None
    metric_drifted: bool = False
    mlflow_run: str | None = None
    attribution_shift: float | None = None  # the configured limit on a share's move
    attributions: list[AttributionDrift] = []

    @property
    def moved_attributions(self) -> list[AttributionDrift]:
        return [a for a in self.attributions if a.moved]

    @property
    def drifted(self) -> list[ColumnDrift]:
        return [c for c in self.columns if c.status == "drift"]

    def event_payload(self) -> dict[str, object]:
        return {"model": self.model, "version": self.version, "rows": self.rows,
                "psi_threshold": self.psi_threshold,
                "drifted": {c.name: round(c.psi, 4) for c in self.drifted},
                "attribution_moved": {a.name: round(a.change, 4)
                                      for a in self.moved_attributions},
                "metric": self.metric, "metric_reference": self.metric_reference,
                "metric_current": self.metric_current, "mlflow_run": self.mlflow_run}


class ScoringSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str
    version: str
    input: str
    output: str
    rows: int
    seconds: float
    rows_per_s: float
    kept: list[str]
    ignored: list[str]
    scored_at: str
    distribution: dict[str, float]
