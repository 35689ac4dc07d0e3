"""Monitoring: a batch of scoring inputs against the champion's reference profile, PSI per
feature and for predictions, the primary metric when labels are present, and a drift report."""

from __future__ import annotations

import base64
import html
import io
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from tasks.adapters.mlflow_registry import Registry
from tasks.core.config import ModelConfig, MonitoringSpec
from tasks.core.errors import ScoringError
from tasks.core.settings import redact
from tasks.core.tasktypes import compute_metrics, regression_amount, task_type
from tasks.profile import PREDICTION, ColumnProfile, Profile, ProfileCounter, psi
from tasks.score import Champion, open_source, predict, prefetch, prepare

DRIFT_EVENT = "mlops.model.drift-detected"
Verdict = Literal["no-drift", "drift", "insufficient"]


class Observed(BaseModel):
    """A batch seen through the reference profile's bins, plus labelled performance if any."""

    profile: Profile
    metric: str | None = None
    metric_value: float | None = None


class ColumnDrift(BaseModel):
    name: str
    kind: str
    psi: float
    status: Literal["stable", "watch", "drift"]


class DriftReport(BaseModel):
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

    @property
    def drifted(self) -> list[ColumnDrift]:
        return [c for c in self.columns if c.status == "drift"]

    def exit_code(self) -> int:
        return {"no-drift": 0, "drift": 4, "insufficient": 2}[self.verdict]

    def event_payload(self) -> dict[str, object]:
        return {"model": self.model, "version": self.version, "rows": self.rows,
                "psi_threshold": self.psi_threshold,
                "drifted": {c.name: round(c.psi, 4) for c in self.drifted},
                "metric": self.metric, "metric_reference": self.metric_reference,
                "metric_current": self.metric_current, "mlflow_run": self.mlflow_run}


def observe(champion: Champion, location: str, target: str) -> Observed:
    """Count the input's features and the champion's predictions into the reference bins."""
    if champion.profile is None:
        raise ScoringError(f"{champion.name} v{champion.version} was registered without a "
                           "reference profile (before monitoring existed): retrain it to monitor it")
    spec = champion.spec
    source = open_source(location, spec, keep=[], optional=(target,))
    counter = ProfileCounter(champion.profile)
    labelled = target in source.columns
    labels, scores = [], []
    for batch in prefetch(source.batches):
        if batch.num_rows == 0:
            continue
        prepared = prepare(batch, spec)
        raw = predict(champion.booster, prepared)
        counter.add(prepared.matrix, raw, spec.task, prepared.missing)
        if labelled:
            labels.append(batch.column(batch.schema.names.index(target)).to_pandas())
            scores.append(raw)
    observed = Observed(profile=counter.profile())
    if labelled and labels and champion.profile.metric:
        observed.metric = champion.profile.metric
        observed.metric_value = labelled_metric(spec, observed.metric, labels, scores)
    return observed


def labelled_metric(spec, metric: str, labels: list, scores: list[np.ndarray]) -> float | None:
    """The primary metric on the rows whose label is known (unknown classes are left out)."""
    import pandas as pd

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
    return compute_metrics(task_type(spec.task), target, raw[known]).get(metric)


def status(value: float, threshold: float) -> Literal["stable", "watch", "drift"]:
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
    base = dict(model=champion.name, version=champion.version, input=location, rows=current.rows,
                psi_threshold=spec.psi_threshold)
    if current.rows < spec.min_rows:
        return DriftReport(**base, verdict="insufficient",
                           message=f"only {current.rows} rows, fewer than monitoring.min_rows="
                                   f"{spec.min_rows}: no verdict")
    columns = [ColumnDrift(name="prediction" if name == PREDICTION else name, kind=ref.kind,
                           psi=round(value, 6), status=status(value, spec.psi_threshold))
               for name, ref in reference.columns.items()
               for value in [psi(ref.fractions(), current.columns[name].fractions())]]
    report = DriftReport(**base, verdict="no-drift", message="", columns=columns)
    if observed.metric and observed.metric_value is not None and reference.metric_value is not None:
        worse = regression_amount(observed.metric, observed.metric_value, reference.metric_value)
        report.metric, report.metric_reference = observed.metric, reference.metric_value
        report.metric_current = observed.metric_value
        report.metric_drifted = worse > spec.max_metric_regression
    drifted = [c.name for c in report.drifted]
    if report.metric_drifted:
        drifted.append(f"{report.metric} {report.metric_current:.4f} vs "
                       f"{report.metric_reference:.4f} at registration")
    if drifted:
        report.verdict = "drift"
        report.message = f"drift in {len(drifted)} of {len(columns)} checks: {', '.join(drifted)}"
    else:
        worst = max(columns, key=lambda c: c.psi)
        report.message = (f"no drift: every PSI <= {spec.psi_threshold:g} "
                          f"(largest {worst.name} {worst.psi:.3f})")
    return report


# -- the report people look at ----------------------------------------------------------------
def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def plot_psi(report: DriftReport) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(report.columns, key=lambda c: c.psi)
    colours = {"stable": "#4c9a2a", "watch": "#e0a800", "drift": "#c0392b"}
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(ordered) + 1.2))
    ax.barh([c.name for c in ordered], [c.psi for c in ordered],
            color=[colours[c.status] for c in ordered])
    ax.axvline(report.psi_threshold, color="black", linestyle="--", linewidth=1,
               label=f"threshold {report.psi_threshold:g}")
    ax.set_xlabel("population stability index (PSI)")
    ax.set_title(f"{report.model} v{report.version}: drift per feature ({report.rows:,} rows)")
    ax.legend(loc="lower right")
    png = _png(fig)
    plt.close(fig)
    return png


def plot_distributions(reference: Profile, current: Profile, report: DriftReport,
                       limit: int = 12) -> bytes:
    """Reference vs current share per bin for the most shifted columns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worst = sorted(report.columns, key=lambda c: -c.psi)[:limit]
    cols = 3
    rows = (len(worst) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.8 * rows), squeeze=False)
    for ax, drift in zip(axes.flat, worst, strict=False):
        key = PREDICTION if drift.name == "prediction" else drift.name
        ref, cur = reference.columns[key], current.columns[key]
        x = np.arange(len(ref.counts))
        ax.bar(x - 0.2, ref.fractions(), 0.4, label="reference (training)", color="#7f8c8d")
        ax.bar(x + 0.2, cur.fractions(), 0.4, label="this batch", color="#2e86c1")
        ax.set_xticks(x, _short(ref), rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{drift.name}: PSI {drift.psi:.3f} ({drift.status})", fontsize=9,
                     color="#c0392b" if drift.status == "drift" else "black")
    for ax in list(axes.flat)[len(worst):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    png = _png(fig)
    plt.close(fig)
    return png


def _short(col: ColumnProfile) -> list[str]:
    return [label if len(label) <= 14 else label[:13] + "…" for label in col.labels()]


def render_html(report: DriftReport, psi_png: bytes, dist_png: bytes) -> str:
    """One self-contained page: verdict, PSI table, plots embedded."""
    def img(png: bytes) -> str:
        return f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}">'

    colour = {"drift": "#c0392b", "no-drift": "#4c9a2a", "insufficient": "#e0a800"}[report.verdict]
    rows = "".join(
        f"<tr><td>{html.escape(c.name)}</td><td>{c.kind}</td><td>{c.psi:.4f}</td>"
        f"<td style='color:{'#c0392b' if c.status == 'drift' else 'inherit'}'>{c.status}</td></tr>"
        for c in sorted(report.columns, key=lambda c: -c.psi))
    metric = ""
    if report.metric:
        metric = (f"<p>Labelled batch: {report.metric} {report.metric_current:.4f} "
                  f"(registration {report.metric_reference:.4f})"
                  f"{' — worse than allowed' if report.metric_drifted else ''}.</p>")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Drift report {html.escape(report.model)} v{report.version}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:left}"
        "</style></head><body>"
        f"<h1>Drift report: {html.escape(report.model)} v{report.version}</h1>"
        f"<p style='font-size:1.3em;color:{colour}'><b>{report.verdict}</b>: "
        f"{html.escape(report.message)}</p>"
        f"<p>Input {html.escape(report.input)}, {report.rows:,} rows, PSI threshold "
        f"{report.psi_threshold:g} (watch above {report.psi_threshold / 2:g}).</p>{metric}"
        f"{img(psi_png)}<h2>Distributions, most shifted first</h2>{img(dist_png)}"
        "<h2>PSI per column</h2><table><tr><th>column</th><th>kind</th><th>PSI</th>"
        f"<th>status</th></tr>{rows}</table></body></html>")


def write_report(report: DriftReport, reference: Profile, current: Profile, out_dir: Path
                 ) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    psi_png = plot_psi(report)
    dist_png = plot_distributions(reference, current, report)
    files = {"drift_report.html": render_html(report, psi_png, dist_png).encode(),
             "drift_psi.png": psi_png, "drift_distributions.png": dist_png,
             "drift_report.json": report.model_dump_json(indent=2).encode(),
             "batch_profile.json": current.model_dump_json().encode()}
    for name, data in files.items():
        (out_dir / name).write_bytes(data)
    return [out_dir / name for name in files]


# -- Prefect tasks --------------------------------------------------------------------------
@task(name="observe-batch", cache_policy=NO_CACHE)
def observe_batch(champion: Champion, location: str, cfg: ModelConfig) -> Observed:
    return observe(champion, location, cfg.target)


@task(name="compare-to-reference", cache_policy=NO_CACHE)
def compare_to_reference(champion: Champion, observed: Observed, cfg: ModelConfig, location: str
                         ) -> DriftReport:
    return compare(champion, observed, cfg.monitoring, location)


@task(name="publish-drift-report", cache_policy=NO_CACHE)
def publish_report(registry: Registry, report: DriftReport, champion: Champion,
                   observed: Observed) -> DriftReport:
    """The report to MLflow (run in experiment monitoring/<model>: PSI metrics, HTML and PNG
    plots) and to Prefect (a markdown artifact linking to it)."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact

    from tasks.tracking import artifact_key, current_flow_run_id

    run_id = registry.start_run(f"monitoring/{report.model}", f"drift-v{report.version}", {
        "model": report.model, "model_version": report.version, "verdict": report.verdict,
        "prefect_flow_run_id": current_flow_run_id() or ""})
    try:
        metrics = {f"psi.{c.name}": c.psi for c in report.columns}
        metrics.update({"rows": report.rows, "drift": float(report.verdict == "drift")})
        if report.metric_current is not None:
            metrics[f"labelled_{report.metric}"] = report.metric_current
        registry.log_run(run_id, params={"input": redact(report.input), "model_version":
                                         report.version, "psi_threshold": report.psi_threshold},
                         metrics=metrics)
        if report.verdict != "insufficient":
            with tempfile.TemporaryDirectory(prefix="mlops-drift-") as tmp:
                files = write_report(report, champion.profile, observed.profile, Path(tmp))
                registry.log_files(run_id, [str(f) for f in files], "drift")
    except BaseException:
        registry.end_run(run_id, "FAILED")
        raise
    registry.end_run(run_id)
    report = report.model_copy(update={"mlflow_run": registry.run_url(run_id)})
    key = artifact_key("drift", report.model)
    create_markdown_artifact(to_markdown(report), key=key,
                             description=f"{report.model}: {report.verdict}")
    if report.mlflow_run.startswith("http"):
        create_link_artifact(f"{report.mlflow_run}/artifacts/drift/drift_report.html",
                             link_text=f"drift report {report.model} v{report.version}",
                             key=f"{key}-report")
    return report


def to_markdown(report: DriftReport) -> str:
    lines = [f"# Drift: {report.model} v{report.version} — **{report.verdict}**", "",
             report.message, "", f"- input: {redact(report.input)} ({report.rows:,} rows)",
             f"- report (HTML, plots): MLflow {report.mlflow_run}, artifacts drift/", ""]
    if report.columns:
        lines += ["| column | PSI | status |", "|---|---|---|",
                  *[f"| {c.name} | {c.psi:.4f} | {c.status} |"
                    for c in sorted(report.columns, key=lambda c: -c.psi)]]
    return "\n".join(lines) + "\n"


@task(name="announce-drift", cache_policy=NO_CACHE)
def announce(report: DriftReport) -> bool:
    """Emit the drift event (deployment triggers start a retrain) and tell Slack."""
    from prefect.events import emit_event

    from tasks.adapters.slack import notify

    emit_event(DRIFT_EVENT, resource={"prefect.resource.id": f"mlops.model.{report.model}",
                                      "prefect.resource.name": report.model,
                                      "mlops.model.version": report.version},
               payload=report.event_payload())
    notify(f"Drift detected: {report.model} v{report.version}",
           f"{report.message}\nReport: {report.mlflow_run}")
    return True
