"""The typed model contract: one YAML per model, validated once, unknown keys rejected."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ByteSize, ConfigDict, Field, ValidationError, model_validator

from tasks.core.decision import ThresholdSpec
from tasks.core.errors import ConfigError
from tasks.core.redact import redact
from tasks.core.tasktypes import METRICS, TASK_TYPES, TaskName


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Strict):
    source: Literal["synthetic", "file", "snowflake"] = "synthetic"
    rows: int | None = Field(default=None, gt=0, description="synthetic only")
    seed: int = Field(default=7, description="synthetic only: generator seed")
    drift: float = Field(default=0.0, ge=0.0, description="synthetic only: distribution shift")
    path: str | None = Field(default=None, description="file only: .csv or .parquet, path or URL; "
                             "a folder of .parquet files (a dataset) ends in /")
    key: str | None = Field(default=None, description="a column identifying each row: the "
                            "streaming split hashes it (default: the row's position)")
    query: str | None = Field(default=None, description="snowflake only")
    date_column: str = Field(default="event_date",
                             description="rows after a run's as-of date are left out (backfills)")

    @model_validator(mode="after")
    def _source_fields(self) -> DataSpec:
        needed = {"file": "path", "snowflake": "query"}.get(self.source)
        if needed and not getattr(self, needed):
            raise ValueError(f"data.{needed} is required when data.source is {self.source}")
        if self.source == "file" and self.path and not self.path.lower().endswith(
            (".csv", ".parquet", ".pq", ".csv.gz", "/")
        ):
            raise ValueError(f"data.path must end in .csv, .parquet or / (a folder of .parquet "
                             f"files), got {self.path!r}")
        if self.path and redact(self.path) != self.path:  # the YAML is in git and in MLflow
            raise ValueError(f"data.path holds credentials: write it as {redact(self.path)!r} "
                             "and list the full URL in MLOPS_DATA_URLS where the flow runs")
        return self

    @property
    def synthetic_rows(self) -> int:
        return self.rows or 50_000


class TrainingSpec(_Strict):
    n_trials: int = Field(default=20, ge=1)
    timeout_s: float | None = Field(default=None, gt=0)
    seed: int = 42
    max_rounds: int = Field(default=400, ge=10)
    early_stopping_rounds: int = Field(default=30, ge=1)
    test_size: float = Field(default=0.2, gt=0, lt=0.5)
    validation_size: float = Field(default=0.2, gt=0, lt=0.5)
    workers: int = Field(default=1, ge=1, le=64, description="N > 1: N hpo-worker/<model> runs "
                         "tune one study in MLOPS_OPTUNA_STORAGE (PostgreSQL, docs/scaling.md)")
    work_pool: str = Field(default="cpu-runners", pattern=r"^[a-z0-9][a-z0-9-]*$",
                           description="Prefect work pool of training-pipeline/<model>")
    split: Literal["stratified", "hash", "hash-stratified"] = Field(
        default="stratified", description="in-memory tables: stratified by class, or each row "
        "by a hash of data.key (else its position), as a streamed table is by default; "
        "hash-stratified (classification): by each row's rank within its class, in table "
        "order, the same on both paths and for a streamed table")
    streaming: bool | None = Field(
        default=None, description="read the data in batches, never whole (default: when the "
        "data is a folder or larger than streaming_above)")
    streaming_above: ByteSize = Field(default=ByteSize(64 * 2**20), description="data larger "
                                      "than this (uncompressed) streams by default (measured "
                                      "in docs/large-tables.md)")
    memory_budget: ByteSize | None = Field(
        default=None, description="e.g. 4GiB: data larger than this (uncompressed) trains from "
        "XGBoost's external memory, its pages on disk under MLOPS_HOME")
    external_memory: bool = Field(default=False, description="always train from external memory "
                                  "(streaming only)")


class GateSpec(_Strict):
    metric: str
    threshold: float
    max_regression: float = Field(default=0.01, ge=0)
    slice_max_regression: float = Field(default=0.03, ge=0)
    min_slice_rows: int = Field(default=50, ge=1)

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric].higher_is_better


class RegistrySpec(_Strict):
    tags: dict[str, str] = Field(default_factory=dict)
    required_tags: list[str] = Field(default_factory=list)


class SmokeSpec(_Strict):
    max_latency_ms: float = Field(default=200, gt=0, description="p95 of single-row requests")
    latency_requests: int = Field(default=20, ge=1, le=1000)
    startup_timeout_s: float = Field(default=120, gt=0)


class StagingSpec(_Strict):
    alias: str = "staging"
    smoke: SmokeSpec = Field(default_factory=SmokeSpec)


class FreezeWindow(_Strict):
    start: date
    end: date
    reason: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> FreezeWindow:
        if self.end < self.start:
            raise ValueError(f"freeze window ends ({self.end}) before it starts ({self.start})")
        return self

    def covers(self, day: date) -> bool:
        return self.start <= day <= self.end


class ProductionSpec(_Strict):
    alias: str = "champion"
    approval: Literal["required", "none"] = "required"
    identity: Literal["gitlab", "declared"] = Field(
        default="declared", description="gitlab: approvers prove who they are with their own "
                                        "GitLab token; declared: a typed name (laptops, demos)")
    approvers: list[str] | None = None
    min_approvals: int = Field(default=1, ge=1, le=5, description="distinct approvers a "
                               "promotion needs (the policy's minimum applies when higher)")
    approval_timeout_h: float = Field(default=72, gt=0)
    freeze: list[FreezeWindow] = Field(default_factory=list)

    @model_validator(mode="after")
    def _approvers_for_verified(self) -> ProductionSpec:
        if self.approval == "required" and self.identity == "gitlab" and not self.approvers:
            raise ValueError("deploy.production.approvers must list the GitLab usernames who may "
                             "approve when identity is gitlab")
        return self

    def may_approve(self, who: str) -> bool:
        return not self.approvers or who in self.approvers


class DeploySpec(_Strict):
    staging: StagingSpec = Field(default_factory=StagingSpec)
    production: ProductionSpec = Field(default_factory=ProductionSpec)


class MonitoringSpec(_Strict):
    psi_threshold: float = Field(default=0.2, gt=0, description="PSI above this is drift")
    psi_significance: float = Field(
        default=0.01, gt=0, lt=1, description="a column is marked only when its PSI also exceeds "
        "what sampling noise reaches with this probability (chi-square, per bin count and sizes)")
    min_rows: int = Field(default=500, ge=1, description="fewer rows give no verdict")
    bins: int = Field(default=10, ge=2, le=50, description="quantile bins per numeric feature")
    max_metric_regression: float = Field(
        default=0.05, ge=0, description="labelled batches: primary metric drop that counts as drift")
    attribution_shift: float = Field(
        default=0.10, gt=0, le=1, description="a feature whose share of mean |SHAP| moved by "
                                              "more than this is marked")


class ModelConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    task: TaskName
    target: str
    exclude: list[str] = Field(default_factory=list)
    categorical: list[str] | None = None
    slices: list[str] = Field(default_factory=list)
    data: DataSpec = Field(default_factory=DataSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    gate: GateSpec
    registry: RegistrySpec = Field(default_factory=RegistrySpec)
    deploy: DeploySpec = Field(default_factory=DeploySpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    threshold: ThresholdSpec | None = Field(
        default=None, description="binary only: the decision threshold rule (default fixed 0.5)")

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        allowed = TASK_TYPES[self.task].metrics
        if self.gate.metric not in allowed:
            raise ValueError(
                f"gate.metric {self.gate.metric!r} does not fit task {self.task}; "
                f"use one of {', '.join(allowed)}"
            )
        missing = [t for t in self.registry.required_tags if t not in self.registry.tags]
        if missing:
            raise ValueError(
                f"registry.tags lacks required compliance tag(s) {', '.join(missing)}"
            )
        if self.threshold is not None and self.task != "binary":
            raise ValueError(f"threshold: only binary models have a decision threshold; remove "
                             f"it from this {self.task} model")
        if self.target in self.exclude:
            raise ValueError(f"target {self.target!r} is also listed in exclude")
        if self.training.split == "hash-stratified" and not TASK_TYPES[self.task].stratify:
            raise ValueError(f"training.split: hash-stratified needs classes; a {self.task} "
                             "model uses hash or stratified")
        return self

    def config_hash(self) -> str:
        single = {"training": {"workers"}} if self.training.workers == 1 else None
        payload = json.dumps(self.model_dump(mode="json", exclude=single),  # older hashes kept
                             sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()


def _format_pydantic(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "config"
    if first["type"] == "extra_forbidden":
        return f"unknown key {where!r}"
    if first["type"] == "missing":
        return f"missing required key {where!r}"
    msg = first["msg"].removeprefix("Value error, ")
    return msg if where == "config" else f"{where}: {msg}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_mapping(text: str, origin: str, what: str = "YAML") -> dict:
    """YAML text as a mapping (a key given twice refused); every problem one ConfigError line."""
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{origin}: malformed {what}{at}: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping of keys, got {type(raw).__name__}")
    return raw


def parse_config(text: str, origin: str = "<config>") -> ModelConfig:
    """Parse and validate YAML text; every problem becomes one ConfigError line."""
    raw = read_mapping(text, origin)
    try:
        return ModelConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {_format_pydantic(exc)}") from None


def resolve_config_path(model_or_path: str, config_dir: Path) -> Path:
    """A model name under config_dir, or a path to a YAML file."""
    candidate = Path(model_or_path)
    if candidate.suffix in {".yaml", ".yml"}:
        if not candidate.is_file():
            raise ConfigError(f"config file {model_or_path} does not exist")
        return candidate
    named = config_dir / f"{model_or_path}.yaml"
    if not named.is_file():
        known = ", ".join(sorted(p.stem for p in config_dir.glob("*.yaml"))) or "none"
        raise ConfigError(f"no model named {model_or_path!r} in {config_dir} (known: {known})")
    return named


def is_config_path(model: str) -> bool:
    """A YAML path given instead of a model name (it may train and stage, never promote)."""
    return Path(model).suffix in {".yaml", ".yml"} or "/" in model


def load_named_config(model: str, config_dir: Path) -> ModelConfig:
    """A model's config by name only: release decisions follow the policy in configs/models,
    never a YAML file passed on the command line."""
    if is_config_path(model):
        raise ConfigError(f"name the model ({Path(model).stem!r}), not a YAML path: production "
                          f"decisions follow {config_dir}/<model>.yaml only")
    return load_config(model, config_dir)


def load_config(model_or_path: str, config_dir: Path) -> ModelConfig:
    path = resolve_config_path(model_or_path, config_dir)
    return parse_config(path.read_text(), origin=str(path))


def list_configs(config_dir: Path) -> list[tuple[Path, ModelConfig | ConfigError]]:
    out: list[tuple[Path, ModelConfig | ConfigError]] = []
    for path in sorted(config_dir.glob("*.yaml")):
        try:
            out.append((path, parse_config(path.read_text(), origin=str(path))))
        except ConfigError as exc:
            out.append((path, exc))
    return out
