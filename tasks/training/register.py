"""Register stage: a native-format XGBoost pyfunc version with lineage, compliance tags, card."""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tasks.adapters.audit_trail import AuditTrail, event
from tasks.adapters.mlflow_registry import ModelVersionRef, Registry
from tasks.contracts import predictions
from tasks.contracts.batch import Profile
from tasks.contracts.training import (
    FeatureSpec,
    GateDecision,
    Registration,
    TrainResult,
    ValidationReport,
)
from tasks.core import integrity
from tasks.core.audit_event import Action
from tasks.core.config import ModelConfig, RegistrySpec
from tasks.core.errors import RegistryError
from tasks.core.policy_config import (
    ENVIRONMENTS,
    LoadedPolicy,
    Signed,
    environment_problems,
    registration_tags,
    require_compliant_config,
    version_checks,
)
from tasks.core.sealed import REGISTERED, facts_fields
from tasks.core.steps import NETWORK_RETRIES, artifact_key, step
from tasks.reports.artifacts import publish_link
from tasks.reports.compliance import REPORT_NAME, compliance_html

CHALLENGER = "challenger"
# the model-from-code file MLflow copies into every version (executed when a version loads)
PYFUNC_MODEL = Path(__file__).with_name("pyfunc_model.py")


def missing_compliance_tags(spec: RegistrySpec) -> list[str]:
    return [t for t in spec.required_tags if not spec.tags.get(t)]


def input_example(frame: pd.DataFrame, spec: FeatureSpec, rows: int = 20) -> pd.DataFrame:
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


def build_model_dir(trained: TrainResult, example: pd.DataFrame, out_dir: Path,
                    card: str, profile: Profile | None = None) -> Path:
    """Save an MLflow pyfunc model (model-from-code + UBJSON booster, no pickle) to out_dir."""
    import mlflow
    import numpy
    import xgboost
    from mlflow.models import infer_signature

    spec = trained.feature_spec
    spec_path = out_dir.parent / "feature_spec.json"
    spec_path.write_text(json.dumps(spec.model_dump(), indent=2))
    booster_path = trained.write_booster(out_dir.parent / "model.ubj")
    matrix = xgboost.DMatrix(spec.matrix(example), enable_categorical=True)
    outputs = spec.predictions_frame(trained.booster().predict(matrix))
    with warnings.catch_warnings():
        # integer columns are kept on purpose: clients send 3 where the training data held 3
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        signature = infer_signature(example, outputs)
    mlflow.pyfunc.save_model(
        path=str(out_dir),
        python_model=str(PYFUNC_MODEL),
        artifacts={"booster": str(booster_path), "feature_spec": str(spec_path),
                   "prediction_table": predictions.__file__},
        signature=signature,
        input_example=example,
        pip_requirements=[f"mlflow=={mlflow.__version__}", f"xgboost=={xgboost.__version__}",
                          f"pandas=={pd.__version__}", f"numpy=={numpy.__version__}"],
    )
    (out_dir / "model_card.md").write_text(card)
    if profile is not None:  # monitoring compares scoring inputs with this
        (out_dir / "reference_profile.json").write_text(profile.model_dump_json())
    return out_dir


@dataclass(frozen=True)
class VersionFiles:
    """What a new version's folder holds: the tuned booster and its feature spec, an input
    example, the model card and the monitoring reference profile."""

    trained: TrainResult
    example: pd.DataFrame
    card: str
    profile: Profile | None = None


def register_version(registry: Registry, cfg: ModelConfig, run_id: str, files: VersionFiles,
                     decision: GateDecision, tags: dict[str, str],
                     validation: ValidationReport | None = None, *, signed: Signed
                     ) -> Registration:
    """Check the tags against the model's and the organisation's policy (the one the flow
    loaded: a run is judged by one policy), upload, create the version (idempotent) with the
    policy's hash and each check's result, store its compliance report in the run, point
    challenger at it; its records are signed with the flow's key and anchored where its settings
    say."""
    missing = missing_compliance_tags(cfg.registry)
    if missing:
        raise RegistryError(f"required compliance tag(s) missing: {', '.join(missing)}")
    loaded = signed.policy
    require_compliant_config(loaded, cfg.name, cfg.registry)
    computed = {"compliance_validated": True, "gate_passed": decision.passed}
    if validation is not None:
        computed["data_validated"] = validation.passed
    trained, card = files.trained, files.card
    sha = trained.sha256()
    all_tags = {**cfg.registry.tags, **tags, "artifact_sha256": sha, "device": trained.device,
                "task": cfg.task, "gate_metric": decision.metric,
                "gate_value": f"{decision.value:.6g}", **registration_tags(loaded, computed)}
    if trained.feature_spec.threshold is not None:  # also in the version's feature_spec.json
        all_tags.update({"decision_threshold": f"{trained.feature_spec.threshold:.6g}",
                         "threshold_rule": trained.feature_spec.threshold_rule or ""})
    existing = registry.find_version(cfg.name, tags["run_key"])
    trail = AuditTrail(registry, cfg.name, settings=signed.settings, key=signed.key)
    if existing is None:
        trail.require_writable()  # its `registered` record must be writable before it exists
        with tempfile.TemporaryDirectory(prefix="mlops-model-") as tmp:
            model_dir = build_model_dir(trained, files.example, Path(tmp) / "model", card,
                                        files.profile)
            # the manifest travels in the folder, its digest in the version's (creation) tags
            all_tags[integrity.TAG] = integrity.seal(model_dir)
            ref = registry.register(cfg.name, run_id, model_dir, all_tags,
                                    description=card.split("\n## Hyperparameters")[0])
        anchor_manifest(registry, ref)
        trail.write(event(REGISTERED, "registry", None, ref.version, "pipeline",
                          flow_run_id=tags.get("prefect_flow_run_id", ""),
                          **facts_fields(ref.tags or all_tags, compliance_tags(loaded, cfg))))
        if ref.run_id:
            registry.log_text(ref.run_id, registration_report(
                loaded, cfg.name, ref.version, ref.tags or all_tags, decision, validation, card),
                REPORT_NAME)
    else:
        ref = existing
    if registry.alias_version(cfg.name, CHALLENGER) != ref.version:
        registry.move_alias(cfg.name, CHALLENGER, ref.version)
        trail.write(
            event(Action.CHALLENGER, "registry", None, ref.version, "pipeline", alias=CHALLENGER,
                  flow_run_id=tags.get("prefect_flow_run_id", ""),
                  digest=all_tags["artifact_sha256"]))
    return _registration(ref, sha, reused=existing is not None)


def compliance_tags(loaded: LoadedPolicy, cfg: ModelConfig) -> list[str]:
    """The tags a decision rules on: the policy's, the model's required ones, the ruled ones."""
    return [*loaded.policy.required_tags, *cfg.registry.required_tags,
            *loaded.policy.allowed_values]


def registration_report(loaded: LoadedPolicy, model: str, version: str, tags: dict[str, str],
                        decision: GateDecision, validation: ValidationReport | None,
                        card: str) -> str:
    """The version's compliance report as registered (`mlops compliance` rewrites it later with
    the approvals so far)."""
    from datetime import UTC, datetime

    checks = version_checks(tags)
    summary = ([f"{validation.rows:,} rows, {len(validation.features)} features, target "
                f"{validation.target}: {'passed' if validation.passed else 'FAILED'}",
                *[f"error: {e}" for e in validation.errors],
                *[f"warning: {w}" for w in validation.warnings]]
               if validation is not None else ["no validation report was given"])
    return compliance_html(
        model=model, version=version, tags=tags, policy_version=loaded.policy.version,
        policy_sha256=loaded.sha256, checks=checks,
        environments={env: environment_problems(loaded.policy, env, tags, checks)
                      for env in ENVIRONMENTS},
        validation=summary,
        gate=[f"{decision.summary()} ({decision.metric} {decision.value:.6g})",
              *[f"{'ok' if c.passed else 'FAIL'}: {c.detail}" for c in decision.checks]],
        records=[], card=card, generated_at=datetime.now(UTC).isoformat(timespec="seconds"))


def anchor_manifest(registry: Registry, ref: ModelVersionRef) -> None:
    """Record the manifest digest as a param of the version's training run too: params cannot
    be changed afterwards, tags can, so a rewritten tag is caught on load."""
    digest = ref.tags.get(integrity.TAG)
    if digest and ref.run_id and integrity.TAG not in registry.run_params(ref.run_id):
        registry.log_run(ref.run_id, params={integrity.TAG: digest})


def _registration(ref: ModelVersionRef, sha: str, reused: bool) -> Registration:
    return Registration(name=ref.name, version=ref.version, uri=ref.uri, run_id=ref.run_id,
                        artifact_sha256=sha, manifest_sha256=ref.tags.get(integrity.TAG),
                        reused=reused)


@step("register", **NETWORK_RETRIES)
def register(registry: Registry, cfg: ModelConfig, run_id: str, files: VersionFiles,
             decision: GateDecision, tags: dict[str, str],
             validation: ValidationReport | None = None, *, signed: Signed) -> Registration:
    """Registration retries on transient registry errors; it is idempotent by run key. The
    model card gets a link artifact (the MLflow UI's view of it, or its path)."""
    registration = register_version(registry, cfg, run_id, files, decision, tags, validation,
                                    signed=signed)
    publish_link(registry, registration.run_id or run_id, "model/model_card.md",
                 f"{cfg.name} v{registration.version} model card",
                 key=artifact_key(cfg.name, "model-card"))
    return registration
