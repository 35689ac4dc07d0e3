"""Monitoring: a batch of scoring inputs against the champion's reference profile, PSI per
feature and for predictions, the primary metric when labels are present; drift emits an event
that starts a retrain and tells Slack."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from tasks.adapters.mlflow_registry import Registry
from tasks.adapters.slack import notify
from tasks.adapters.sources import open_source, prefetch
from tasks.batch.attributions import AttributionCounter, attribution_drift
from tasks.batch.champion import Champion, predict, prepare
from tasks.batch.profiles import ProfileCounter, psi, psi_noise_bound
from tasks.contracts.batch import (
    DRIFT_EVENT,
    PREDICTION,
    ColumnDrift,
    DriftReport,
    Observed,
    Verdict,
)
from tasks.contracts.training import FeatureSpec, tracking_key
from tasks.core.config import ModelConfig, MonitoringSpec
from tasks.core.errors import ScoringError
from tasks.core.redact import redact
from tasks.core.settings import SnowflakeSettings
from tasks.core.steps import artifact_key, step
from tasks.core.tasktypes import compute_metrics, regression_amount, task_type
from tasks.reports.artifacts import publish_images, publish_link
from tasks.reports.drift import drift_markdown, write_report


def observe(champion: Champion, location: str, target: str,
            snowflake_settings: SnowflakeSettings | None = None) -> Observed:
    """Count the input's features and the champion's predictions into the reference bins."""
    if champion.profile is None:
        raise ScoringError(f"{champion.name} v{champion.version} was registered without a "
                           "reference profile (before monitoring existed): retrain it to monitor it")
    spec = champion.spec
    source = open_source(location, spec, keep=[], optional=(target,),
                         snowflake_settings=snowflake_settings)
    counter = ProfileCounter(champion.profile)
    explained = AttributionCounter(spec.features) if champion.profile.attributions else None
    labelled = target in source.columns
    labels, scores = [], []
    for batch in prefetch(source.batches):
        if batch.num_rows == 0:
            continue
        prepared = prepare(batch, spec)
        raw = predict(champion.booster, prepared)
        counter.add(prepared.matrix, raw, spec.task, prepared.missing)
        if explained is not None:
            explained.add(champion.booster, prepared.matrix)
        if labelled:
            labels.append(batch.column(batch.schema.names.index(target)).to_pandas())
            scores.append(raw)
    profile = counter.profile()
    if explained is not None:
        profile = profile.model_copy(update={"attributions": explained.means()})
    metric = (champion.profile.metric or None) if labelled and labels else None
    return Observed(profile=profile, metric=metric,
                    metric_value=labelled_metric(spec, metric, labels, scores) if metric else None)


def labelled_metric(spec: FeatureSpec, metric: str, labels: list, scores: list[np.ndarray]
                    ) -> float | None:
    """The primary metric on the rows whose label is known (unknown classes are left out)."""
    y = pd.concat(labels, ignore_index=True)
    raw = np.concatenate(scores)
    if spec.task == "regression":
        encoded = pd.to_numeric(y, errors="coerce").to_numpy(dtype=float)
        known = np.isfinite(encoded)
    else:
        index = {c: float(i) for i, c in enumerate(spec.classes)}
        encoded = y.astype("string").map(index).to_numpy(dtype=float, na_value=np.nan)
        known = ~np.isnan(encoded)
    if not known.any():
        return None
    target = encoded[known] if spec.task == "regression" else encoded[known].astype(int)
    scored = raw[known]
    return compute_metrics(task_type(spec.task), target, scored, spec.labels(scored)).get(metric)


def status(value: float, threshold: float, noise: float = 0.0
           ) -> Literal["stable", "watch", "drift"]:
    """Drift above the threshold, watch above half of it; neither when sampling noise alone
    reaches the value (noise: the chi-square bound for the column's bins and both sizes)."""
    if value <= noise:
        return "stable"
    if value > threshold:
        return "drift"
    return "watch" if value > threshold / 2 else "stable"


def compare(champion: Champion, observed: Observed, spec: MonitoringSpec, location: str
            ) -> DriftReport:
    """The verdict: drift when any feature's or the predictions' PSI exceeds the threshold, or
    the labelled primary metric is worse than at registration by more than allowed."""
    reference = champion.profile
    assert reference is not None
    current = observed.profile
    base: dict[str, Any] = dict(model=champion.name, version=champion.version, input=redact(location),
                rows=current.rows, psi_threshold=spec.psi_threshold,
                attribution_shift=spec.attribution_shift)
    if current.rows < spec.min_rows:
        return DriftReport(**base, verdict="insufficient",
                           message=f"only {current.rows} rows, fewer than monitoring.min_rows="
                                   f"{spec.min_rows}: no verdict")
    columns = [ColumnDrift(name="prediction" if name == PREDICTION else name, kind=ref.kind,
                           psi=round(value, 6), noise_bound=round(noise, 6),
                           status=status(value, spec.psi_threshold, noise))
               for name, ref in reference.columns.items()
               for value, noise in [(psi(ref.fractions(), current.columns[name].fractions()),
                                     psi_noise_bound(ref.counts, current.columns[name].counts,
                                                     spec.psi_significance))]]
    attributions = attribution_drift(reference.attributions, current.attributions,
                                     spec.attribution_shift)
    metric: dict[str, Any] = {}
    if observed.metric and observed.metric_value is not None and reference.metric_value is not None:
        worse = regression_amount(observed.metric, observed.metric_value, reference.metric_value)
        metric = dict(metric=observed.metric, metric_reference=reference.metric_value,
                      metric_current=observed.metric_value,
                      metric_drifted=worse > spec.max_metric_regression)
    drifted = [c.name for c in columns if c.status == "drift"]
    drifted += [f"attribution of {a.name} {a.reference_share:.0%} -> {a.current_share:.0%}"
                for a in attributions if a.moved]
    if metric.get("metric_drifted"):
        drifted.append(f"{metric['metric']} {metric['metric_current']:.4f} vs "
                       f"{metric['metric_reference']:.4f} at registration")
    verdict: Verdict = "drift" if drifted else "no-drift"
    if drifted:
        checks = len(columns) + len(attributions)
        message = f"drift in {len(drifted)} of {checks} checks: {', '.join(drifted)}"
    else:
        worst = max(columns, key=lambda c: c.psi)
        message = (f"no drift: no PSI above both {spec.psi_threshold:g} and its noise "
                   f"bound (largest {worst.name} {worst.psi:.4f})"
                   + (f"; attribution shares within {spec.attribution_shift:g}"
                      if attributions else ""))
    return DriftReport(**base, **metric, verdict=verdict, message=message, columns=columns,
                       attributions=attributions)


@step("observe-batch")
def observe_batch(champion: Champion, location: str, cfg: ModelConfig,
                  snowflake: SnowflakeSettings) -> Observed:
    return observe(champion, location, cfg.target, snowflake)


@step("compare-to-reference")
def compare_to_reference(champion: Champion, observed: Observed, cfg: ModelConfig, location: str
                         ) -> DriftReport:
    return compare(champion, observed, cfg.monitoring, location)


@step("publish-drift-report")
def publish_report(registry: Registry, report: DriftReport, champion: Champion,
                   observed: Observed) -> DriftReport:
    """The report to MLflow (run in experiment monitoring/<model>: PSI metrics, HTML and PNG
    plots) and to Prefect (a markdown artifact linking to it)."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.runtime import flow_run

    tags = {"model": report.model, "model_version": report.version, "verdict": report.verdict,
            "prefect_flow_run_id": flow_run.get_id() or ""}
    with registry.run(f"monitoring/{report.model}", f"drift-v{report.version}", tags) as run_id:
        metrics = {tracking_key("psi", c.name): c.psi for c in report.columns}
        metrics.update({tracking_key("attribution_share_change", a.name): a.change
                        for a in report.attributions})
        metrics.update({"rows": report.rows, "drift": float(report.verdict == "drift")})
        if report.metric_current is not None:
            metrics[f"labelled_{report.metric}"] = report.metric_current
        registry.log_run(run_id, params={"input": redact(report.input), "model_version":
                                         report.version, "psi_threshold": report.psi_threshold},
                         metrics=metrics)
        if report.verdict != "insufficient" and champion.profile is not None:  # it had a verdict
            with tempfile.TemporaryDirectory(prefix="mlops-drift-") as tmp:
                files = write_report(report, champion.profile, observed.profile, Path(tmp))
                registry.log_files(run_id, [str(f) for f in files], "drift")
    report = report.model_copy(update={"mlflow_run": registry.run_url(run_id)})
    key = artifact_key("drift", report.model)
    create_markdown_artifact(drift_markdown(report), key=key,
                             description=f"{report.model}: {report.verdict}")
    if report.verdict != "insufficient":
        publish_images(registry, run_id, ["drift/drift_psi.png", "drift/drift_distributions.png"],
                       key=key, what=f"{report.model} drift")
        publish_link(registry, run_id, "drift/drift_report.html",
                     f"drift report {report.model} v{report.version}", key=f"{key}-report")
    return report


@step("announce-drift")
def announce(report: DriftReport, slack_block: str | None) -> bool:
    """Emit the drift event (deployment triggers start a retrain) and tell Slack (the block
    named, if any)."""
    from prefect.events import emit_event

    emit_event(DRIFT_EVENT, resource={"prefect.resource.id": f"mlops.model.{report.model}",
                                      "prefect.resource.name": report.model,
                                      "mlops.model.version": report.version},
               payload=report.event_payload())
    notify(f"Drift detected: {report.model} v{report.version}",
           f"{report.message}\nReport: {report.mlflow_run}", slack_block)
    return True
