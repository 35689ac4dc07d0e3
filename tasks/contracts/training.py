"""What the training stages hand each other: data checks, the feature spec, the tuned model,
its evaluation, the gate's decision, the run plan and the registered version."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from tasks.contracts import predictions
from tasks.core.tasktypes import TaskName

TRACKING_KEY_LIMIT = 250  # MLflow's (and GitLab's) longest metric or param name


def tracking_key(*parts: str) -> str:
    """A metric name made of column names and values, in the characters MLflow accepts
    (`slice.region.north.roc_auc`, `psi.claim_amount`)."""
    return ".".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", str(p)) for p in parts)


class ColumnSummary(BaseModel):
    name: str
    dtype: str
    role: str
    nulls: int
    unique: int
    min: float | None = None
    max: float | None = None


class ValidationReport(BaseModel):
    """The validate stage's findings; errors stop the run before training."""

    model_config = ConfigDict(frozen=True)

    rows: int
    target: str
    features: list[str]
    categorical: list[str]
    classes: list[str]
    class_counts: dict[str, int]
    errors: list[str]
    warnings: list[str]
    columns: list[ColumnSummary]
    # the values of each categorical feature (as text, sorted): a streamed table's feature spec
    categories: dict[str, list[str]] = Field(default_factory=dict, exclude=True)

    @property
    def passed(self) -> bool:
        return not self.errors


class FeatureSpec(BaseModel):
    """What the model needs at prediction time; stored with every model version."""

    model_config = ConfigDict(frozen=True)

    task: TaskName
    target: str
    features: list[str]
    categories: dict[str, list[str]]
    classes: list[str]
    threshold: float | None = None  # binary only: P(positive) at or above it is the positive class
    threshold_rule: str | None = None  # binary only: how it was chosen (on the validation split)

    def matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        return predictions.to_matrix(frame, self.features, self.categories)

    def encode_target(self, y: pd.Series) -> np.ndarray:
        if self.task == "regression":
            return y.astype(float).to_numpy()
        # each distinct value's text is looked up once: no string per row (45 MB at 800k rows)
        values = pd.Categorical(y)
        position = {c: i for i, c in enumerate(self.classes)}
        lookup = np.array([*(position.get(c, -1) for c in values.categories.astype(str)), -1],
                          dtype=np.int64)  # the last -1 is a null's (code -1)
        codes = lookup[values.codes]
        if (codes < 0).any():
            raise ValueError(f"target {self.target!r} holds values outside the model's classes "
                             f"{self.classes} (or nulls)")
        return codes

    def labels(self, raw: np.ndarray) -> np.ndarray | None:
        return predictions.label_codes(raw, self.task, self.threshold)

    def class_codes(self, raw: np.ndarray) -> np.ndarray:
        return predictions.class_codes(raw, self.task, self.threshold)

    def predictions_frame(self, raw: np.ndarray) -> pd.DataFrame:
        return predictions.predictions_frame(raw, self.task, self.classes, self.threshold)

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        return predictions.scores_from_frame(frame, self.task, self.classes)


def row_positions(rows: object) -> np.ndarray:
    """Row positions as a read-only int64 array (a copy: the caller's array stays writable)."""
    positions = np.array(rows, dtype=np.int64)
    if positions.ndim != 1:
        raise ValueError(f"row positions must be one-dimensional, not {positions.shape}")
    positions.flags.writeable = False
    return positions


RowPositions = Annotated[np.ndarray, BeforeValidator(row_positions)]


class Splits(BaseModel):
    """Each split's row positions, sorted. Arrays, not lists: Prefect walks a list handed
    to a task item by item (about 0.5 s a run at 50,000 rows), and an array it does not."""
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    train: RowPositions
    valid: RowPositions
    test: RowPositions

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Splits) and all(
            np.array_equal(getattr(self, part), getattr(other, part))
            for part in ("train", "valid", "test"))

    __hash__ = None  # type: ignore[assignment]  # arrays: equal by value, not hashable


class TrialSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    number: int
    state: str
    value: float | None


class TrainResult(BaseModel):
    """The tuned booster travels inside the result (UBJSON, base64) so a cached result is whole."""

    model_config = ConfigDict(frozen=True)

    booster_ubj: str
    feature_spec: FeatureSpec
    params: dict[str, float | int | str]
    best_iteration: int
    best_value: float
    eval_metric: str
    device: str
    trials: list[TrialSummary]
    duration_s: float

    @property
    def n_pruned(self) -> int:
        return sum(t.state == "PRUNED" for t in self.trials)

    def raw_booster(self) -> bytes:
        return base64.b64decode(self.booster_ubj)

    def booster(self):
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(self.raw_booster()))
        return booster

    def sha256(self) -> str:
        return hashlib.sha256(self.raw_booster()).hexdigest()

    def write_booster(self, path: Path) -> Path:
        path.write_bytes(self.raw_booster())
        return path


class EvalReport(BaseModel):
    """Held-out metrics, the same per slice, and the plots' files."""

    model_config = ConfigDict(frozen=True)

    primary_metric: str
    metrics: dict[str, float]
    slices: dict[str, dict[str, dict[str, float]]]
    test_rows: int
    plots: list[str] = []
    threshold: float | None = None  # binary: the decision threshold the labels used
    threshold_rule: str | None = None
    # mean |SHAP| per feature on the test set: {"all": {...}} (per class too for multiclass)
    attributions: dict[str, dict[str, float]] = {}

    def slice_table(self, metric: str) -> list[tuple[str, str, float, int]]:
        return [(col, value, m[metric], int(m["rows"]))
                for col, values in self.slices.items() for value, m in values.items()
                if metric in m]


class ChampionScore(BaseModel):
    """The current champion re-scored on this run's test set (or why it could not be)."""

    model_config = ConfigDict(frozen=True)

    version: str | None = None
    report: EvalReport | None = None
    error: str | None = None


class GateCheck(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    passed: bool
    detail: str


class GateDecision(BaseModel):
    model_config = ConfigDict(frozen=True)

    passed: bool
    metric: str
    value: float
    champion_value: float | None
    champion_version: str | None
    checks: list[GateCheck]

    @property
    def reasons(self) -> list[str]:
        return [c.detail for c in self.checks if not c.passed]

    def summary(self) -> str:
        if self.passed:
            return "passed"
        return "rejected: " + "; ".join(self.reasons)


class RunPlan(BaseModel):
    """What this execution is: its run key, device, study and an earlier identical version."""

    model_config = ConfigDict(frozen=True)

    run_key: str
    device: str
    study_name: str
    plot_dir: str
    tags: dict[str, str]
    existing_version: str | None


class Registration(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    uri: str
    run_id: str | None
    artifact_sha256: str
    manifest_sha256: str | None = None  # SHA-256 of the version's integrity manifest
    reused: bool
