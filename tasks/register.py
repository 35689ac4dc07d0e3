"""Register stage: a native-format XGBoost pyfunc version with lineage, compliance tags, card."""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from tasks import pyfunc_model
from tasks.adapters.mlflow_registry import ModelVersionRef, Registry
from tasks.core.config import ModelConfig, RegistrySpec
from tasks.core.errors import RegistryError, retry_transient
from tasks.evaluate import EvalReport
from tasks.gate import GateDecision
from tasks.profile import Profile
from tasks.train import TrainResult
from tasks.validate import ValidationReport

CHALLENGER = "challenger"


class Registration(BaseModel):
    name: str
    version: str
    uri: str
    run_id: str | None
    artifact_sha256: str
    reused: bool


def missing_compliance_tags(spec: RegistrySpec) -> list[str]:
    return [t for t in spec.required_tags if not spec.tags.get(t)]


def input_example(frame: pd.DataFrame, spec, rows: int = 20) -> pd.DataFrame:
    """Raw feature rows as a caller sends them: categories as text, numbers in their training
    dtype (integers stay integers, so JSON clients can send 3 where the data held 3)."""
    example = frame[spec.features].head(rows).copy()
    for col in spec.features:
        values = example[col]
        if col in spec.categories:
            example[col] = values.astype(str)
        elif pd.api.types.is_bool_dtype(values) or pd.api.types.is_integer_dtype(values):
            example[col] = values.astype("int64")
        else:
            example[col] = values.astype("float64")
    return example.reset_index(drop=True)


def model_card(cfg: ModelConfig, trained: TrainResult, report: EvalReport,
               decision: GateDecision, validation: ValidationReport, tags: dict[str, str]) -> str:
    lines = [
        f"# Model card: {cfg.name}", "",
        f"- task: {cfg.task}, target `{cfg.target}`",
        f"- features ({len(trained.feature_spec.features)}): "
        + ", ".join(trained.feature_spec.features),
        f"- training rows: {validation.rows} (test {report.test_rows}), device {trained.device}",
        f"- gate: {decision.summary()}",
        "", "## Test metrics", "", "| metric | value |", "|---|---|",
        *[f"| {k} | {v:.4f} |" for k, v in report.metrics.items()],
    ]
    rows = report.slice_table(report.primary_metric)
    if rows:
        lines += ["", f"## {report.primary_metric} per slice", "", "| slice | value | rows |",
                  "|---|---|---|", *[f"| {c}={v} | {m:.4f} | {n} |" for c, v, m, n in rows]]
    lines += ["", "## Hyperparameters", "", *[f"- {k}: {v}" for k, v in trained.params.items()],
              f"- rounds: {trained.best_iteration + 1}",
              "", "## Lineage and compliance", "", *[f"- {k}: {v}" for k, v in tags.items()]]
    return "\n".join(lines) + "\n"


def build_model_dir(trained: TrainResult, example: pd.DataFrame, out_dir: Path,
                    card: str, profile: Profile | None = None) -> Path:
    """Save an MLflow pyfunc model (model-from-code + UBJSON booster, no pickle) to out_dir."""
    import mlflow
    import numpy
    import xgboost
    from mlflow.models import infer_signature

    spec_path = out_dir.parent / "feature_spec.json"
    spec_path.write_text(json.dumps(trained.feature_spec.model_dump(), indent=2))
    booster_path = trained.write_booster(out_dir.parent / "model.ubj")
    spec = trained.feature_spec.model_dump()
    booster = trained.booster()
    matrix = xgboost.DMatrix(pyfunc_model.to_matrix(example, spec), enable_categorical=True)
    predictions = pyfunc_model.predictions_frame(booster.predict(matrix), spec)
    with warnings.catch_warnings():
        # integer columns are kept on purpose: clients send 3 where the training data held 3
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        signature = infer_signature(example, predictions)
    mlflow.pyfunc.save_model(
        path=str(out_dir),
        python_model=pyfunc_model.__file__,
        artifacts={"booster": str(booster_path), "feature_spec": str(spec_path)},
        signature=signature,
        input_example=example,
        pip_requirements=[f"mlflow=={mlflow.__version__}", f"xgboost=={xgboost.__version__}",
                          f"pandas=={pd.__version__}", f"numpy=={numpy.__version__}"],
    )
    (out_dir / "model_card.md").write_text(card)
    if profile is not None:  # monitoring compares scoring inputs with this
        (out_dir / "reference_profile.json").write_text(profile.model_dump_json())
    return out_dir


def register_version(registry: Registry, cfg: ModelConfig, run_id: str, trained: TrainResult,
                     decision: GateDecision, example: pd.DataFrame, card: str,
                     tags: dict[str, str], profile: Profile | None = None) -> Registration:
    """Check compliance tags, upload, create the version (idempotent), point challenger at it."""
    missing = missing_compliance_tags(cfg.registry)
    if missing:
        raise RegistryError(f"required compliance tag(s) missing: {', '.join(missing)}")
    sha = trained.sha256()
    all_tags = {**cfg.registry.tags, **tags, "artifact_sha256": sha, "device": trained.device,
                "task": cfg.task, "gate_metric": decision.metric,
                "gate_value": f"{decision.value:.6g}"}
    existing = registry.find_version(cfg.name, tags["run_key"])
    if existing is None:
        with tempfile.TemporaryDirectory(prefix="mlops-model-") as tmp:
            model_dir = build_model_dir(trained, example, Path(tmp) / "model", card, profile)
            ref = registry.register(cfg.name, run_id, model_dir, all_tags,
                                    description=card.split("\n## Hyperparameters")[0])
    else:
        ref = existing
    registry.set_alias(cfg.name, CHALLENGER, ref.version)
    return _registration(ref, sha, reused=existing is not None)


def _registration(ref: ModelVersionRef, sha: str, reused: bool) -> Registration:
    return Registration(name=ref.name, version=ref.version, uri=ref.uri, run_id=ref.run_id,
                        artifact_sha256=sha, reused=reused)


@task(name="register", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE,
      retry_condition_fn=retry_transient)
def register(registry: Registry, cfg: ModelConfig, run_id: str, trained: TrainResult,
             decision: GateDecision, example: pd.DataFrame, card: str, tags: dict[str, str],
             profile: Profile | None = None) -> Registration:
    """Registration retries on transient registry errors; it is idempotent by run key."""
    return register_version(registry, cfg, run_id, trained, decision, example, card, tags,
                            profile)
