"""The champion ready to score batches: downloaded, verified against its registered checksum,
loaded in XGBoost's native format, and its feature matrix built from Arrow batches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tasks.adapters.mlflow_registry import Registry
from tasks.contracts.batch import Profile
from tasks.contracts.training import FeatureSpec
from tasks.core.config import ModelConfig
from tasks.core.errors import DataError, ScoringError
from tasks.core.steps import NETWORK_RETRIES, step


@dataclass
class Champion:
    """A registered version ready to score: booster verified against its artifact_sha256 tag."""

    name: str
    version: str
    alias: str
    booster: object
    spec: FeatureSpec
    profile: Profile | None
    sha256: str


def load_champion(registry: Registry, cfg: ModelConfig, into: Path,
                  version: str | None = None) -> Champion:
    """Download the champion (`version`: the one the signed trail names, already compared with
    the alias; default: the alias's) — the registry checks its files before anything reads
    them — then load the booster for CPU scoring."""
    import xgboost as xgb

    alias = cfg.deploy.production.alias
    version = version or registry.alias_version(cfg.name, alias)
    if version is None:
        raise ScoringError(f"{cfg.name} has no @{alias} version yet: promote one first "
                           f"(mlops run {cfg.name}, or mlops promote)")
    local = registry.download_version(cfg.name, version, into)
    booster = xgb.Booster()
    booster.load_model(str(next(local.path.rglob("*.ubj"))))
    # batch scoring runs on CPU runners, whatever device trained the model
    booster.set_param({"device": "cpu"})
    profile_file = next(local.path.rglob("reference_profile.json"), None)
    profile = Profile.model_validate_json(profile_file.read_text()) if profile_file else None
    return Champion(name=cfg.name, version=version, alias=alias, booster=booster,
                    spec=FeatureSpec.model_validate(local.spec), profile=profile,
                    sha256=local.booster_sha256)


@step("load-champion", **NETWORK_RETRIES)
def champion_model(registry: Registry, cfg: ModelConfig, into: str, version: str | None
                   ) -> Champion:
    """Registry downloads retry on network errors; a missing or tampered champion does not."""
    return load_champion(registry, cfg, Path(into), version)


@dataclass
class Prepared:
    matrix: pd.DataFrame
    missing: dict[str, int]


def prepare(batch: pa.RecordBatch, spec: FeatureSpec) -> Prepared:
    """The model's feature matrix from an Arrow batch: numbers as float32, categories coded by
    the training categories (unseen values become missing, as in training); wrong types raise."""
    out: dict[str, object] = {}
    missing: dict[str, int] = {}
    names = batch.schema.names
    for col in spec.features:
        arr = batch.column(names.index(col))
        if col in spec.categories:
            out[col] = _codes(arr, spec.categories[col])
            missing[col] = arr.null_count
        else:
            out[col] = _numbers(arr, col)
    return Prepared(pd.DataFrame(out, copy=False), missing)


def _numbers(arr: pa.Array, col: str) -> np.ndarray:
    kind = arr.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
            or pa.types.is_decimal(kind) or pa.types.is_null(kind)):
        raise DataError(f"wrong type: feature {col!r} must hold numbers, the input has {kind}")
    return pc.cast(arr, pa.float32()).to_numpy(zero_copy_only=False)


def code_dtype(categories: int) -> type:
    """The narrowest integer that holds every category code (and -1 for missing)."""
    return np.int16 if categories < np.iinfo(np.int16).max else np.int32


def _codes(arr: pa.Array, categories: list[str]) -> pd.Categorical:
    if not pa.types.is_dictionary(arr.type):
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            arr = pc.cast(arr, pa.string())
        arr = pc.dictionary_encode(arr)
    index = {c: i for i, c in enumerate(categories)}
    lookup: np.ndarray = np.array([index.get(str(v), -1) for v in arr.dictionary.to_pylist()] + [-1],
                      dtype=code_dtype(len(categories)))
    positions = pc.fill_null(arr.indices, len(arr.dictionary)).to_numpy(zero_copy_only=False)
    return pd.Categorical.from_codes(lookup[positions], categories=categories)


def predict(booster, prepared: Prepared) -> np.ndarray:
    return booster.inplace_predict(prepared.matrix)
