"""Gate stage: the current champion re-scored on this run's test set, then a pure decision
(floor, regression vs champion, regression per slice)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.adapters.mlflow_registry import Registry
from tasks.contracts import explanations, predictions
from tasks.contracts.training import (
    ChampionScore,
    EvalReport,
    FeatureSpec,
    GateCheck,
    GateDecision,
)
from tasks.core.config import GateSpec, ModelConfig
from tasks.core.errors import GateRejected, IntegrityError
from tasks.core.steps import step
from tasks.core.tasktypes import METRICS, regression_amount
from tasks.training.metrics import SCORE_ROWS, evaluate_scores, in_pieces


def decide(candidate: EvalReport, champion: EvalReport | None, gate: GateSpec,
           champion_version: str | None = None, champion_error: str | None = None
           ) -> GateDecision:
    """Judge the candidate; without a champion only the floor applies."""
    metric = gate.metric
    higher = METRICS[metric].higher_is_better
    value = candidate.metrics.get(metric)
    checks: list[GateCheck] = []
    if value is None:
        checks.append(GateCheck(name="floor", passed=False,
                                detail=f"{metric} could not be computed on the test set"))
        return GateDecision(passed=False, metric=metric, value=float("nan"), champion_value=None,
                            champion_version=champion_version, checks=checks)
    ok = value >= gate.threshold if higher else value <= gate.threshold
    bound = "floor" if higher else "ceiling"
    checks.append(GateCheck(
        name="floor", passed=ok,
        detail=f"{metric} {value:.4f} {'meets' if ok else 'misses'} the {bound} {gate.threshold}"))

    champion_value = None
    if champion_error:
        checks.append(GateCheck(name="champion", passed=False,
                                detail=f"champion v{champion_version} could not be re-scored: "
                                       f"{champion_error}"))
    elif champion is not None:
        champion_value = champion.metrics.get(metric)
        if champion_value is not None:
            worse = regression_amount(metric, value, champion_value)
            ok = worse <= gate.max_regression
            checks.append(GateCheck(
                name="vs-champion", passed=ok,
                detail=f"{metric} {value:.4f} vs champion v{champion_version} "
                       f"{champion_value:.4f} (regression {max(worse, 0):.4f}, "
                       f"allowed {gate.max_regression})"))
        for col, values in candidate.slices.items():
            for slice_value, m in values.items():
                old = champion.slices.get(col, {}).get(slice_value, {}).get(metric)
                new = m.get(metric)
                if old is None or new is None:
                    continue
                worse = regression_amount(metric, new, old)
                if worse > gate.slice_max_regression:
                    checks.append(GateCheck(
                        name=f"slice {col}={slice_value}", passed=False,
                        detail=f"{col}={slice_value}: {metric} {new:.4f} vs champion {old:.4f} "
                               f"(regression {worse:.4f}, allowed {gate.slice_max_regression})"))
        if all(c.passed for c in checks if c.name.startswith("slice")):
            checks.append(GateCheck(name="slices", passed=True,
                                    detail=f"no slice regresses more than "
                                           f"{gate.slice_max_regression}"))
    return GateDecision(passed=all(c.passed for c in checks), metric=metric, value=value,
                        champion_value=champion_value, champion_version=champion_version,
                        checks=checks)


def rescore_champion(registry: Registry, cfg: ModelConfig, test: pd.DataFrame,
                     spec: FeatureSpec) -> ChampionScore:
    """The version behind the production alias, verified and re-scored on this run's test set,
    so the gate compares like with like. Any failure is a finding for the gate, not a crash,
    except a champion whose files fail their integrity check: that stops the run."""
    version = registry.alias_version(cfg.name, cfg.deploy.production.alias)
    if version is None:
        return ChampionScore()
    try:
        with tempfile.TemporaryDirectory(prefix="mlops-champion-") as tmp:
            local = registry.download_version(cfg.name, version, Path(tmp))
            model = registry.load_pyfunc(local.path)
            scores, labels = champion_predictions(model, test, cfg.target, spec)
            attributions = champion_attributions(model, test)
    except IntegrityError:  # a tampered champion is not a finding: nothing loads it
        raise
    except Exception as exc:  # a champion that cannot be re-scored fails the gate, loudly
        return ChampionScore(version=version, error=str(exc).splitlines()[0][:300])
    report = evaluate_scores(spec, test, scores, cfg.slices, cfg.gate.min_slice_rows, labels)
    return ChampionScore(version=version,
                         report=report.model_copy(update={"attributions": attributions}))


def champion_predictions(model, test: pd.DataFrame, target: str, spec: FeatureSpec,
                         rows: int = SCORE_ROWS) -> tuple[np.ndarray, np.ndarray | None]:
    """The champion's scores and own labels on the test rows, `rows` rows at a time: its
    prediction frame (a text label per row) and input copy never cover a large test set."""
    scores, labels = [], []
    for piece in in_pieces(test, rows):
        predicted = model.predict(piece.drop(columns=[target]))
        scores.append(spec.scores(predicted))
        labels.append(champion_labels(predicted, spec))
    if any(part is None for part in labels):
        return np.concatenate(scores), None
    return np.concatenate(scores), np.concatenate(labels)


def champion_attributions(model, test: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The champion's mean |SHAP| on this run's test set, from its own booster and feature
    spec; empty when the version is not this project's native pyfunc model."""
    inner = model.unwrap_python_model()
    if not all(hasattr(inner, a) for a in ("booster", "spec", "table")):
        return {}
    spec = inner.spec
    matrix = inner.table.to_matrix(explanations.sample(test), spec["features"], spec["categories"])
    return explanations.mean_abs(explanations.contributions(inner.booster, matrix),
                                 spec["features"], spec["classes"])


def champion_labels(predicted: pd.DataFrame, spec: FeatureSpec):
    """The champion's own predicted classes (at its own decision threshold) as class codes, so
    threshold-dependent metrics judge each model at the threshold it was approved with."""
    if spec.task == "regression" or predictions.PREDICTION not in predicted:
        return None
    index = {c: i for i, c in enumerate(spec.classes)}
    codes = predicted[predictions.PREDICTION].astype(str).map(index)
    return None if codes.isna().any() else codes.to_numpy(dtype=int)


@step("score-champion")
def score_champion(registry: Registry, cfg: ModelConfig, test: pd.DataFrame,
                   spec: FeatureSpec) -> ChampionScore:
    return rescore_champion(registry, cfg, test, spec)


@step("gate")
def gate(candidate: EvalReport, champion: ChampionScore, spec: GateSpec) -> GateDecision:
    """Judge the candidate against the floor and the re-scored champion; every check is logged.
    A rejection is a decision like a pass: the task completes and returns it."""
    from prefect.logging import get_run_logger

    decision = decide(candidate, champion.report, spec, champion.version, champion.error)
    logger = get_run_logger()
    for check in decision.checks:
        logger.info("gate %s: %s", "ok" if check.passed else "FAIL", check.detail)
    return decision


def ensure_passed(model: str, decision: GateDecision) -> GateDecision:
    """The decision when it passed; a rejection raises GateRejected with its reasons (the flow
    ends in the named state `GateRejected`: tasks/core/outcomes.py)."""
    if not decision.passed:
        raise GateRejected(f"{model} gate {decision.summary()}")
    return decision
