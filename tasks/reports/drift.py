"""The drift report people look at: PSI per feature against the threshold, reference vs batch
distributions of the most shifted columns, one self-contained HTML page, a markdown summary."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from tasks.contracts.batch import PREDICTION, ColumnProfile, DriftReport, Profile
from tasks.core.redact import redact
from tasks.reports import attribution_drift


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
    noisy = [(c.name, c.noise_bound) for c in ordered if c.noise_bound is not None]
    if noisy:  # what sampling noise alone reaches for each column's bins and sizes
        ax.scatter([b for _, b in noisy], [n for n, _ in noisy], marker="|", s=120,
                   color="black", label="noise bound (chi-square)", zorder=3)
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
        ax.set_title(f"{drift.name}: PSI {drift.psi:.4f} ({drift.status})", fontsize=9,
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


def render_html(report: DriftReport, psi_png: bytes, dist_png: bytes,
                attribution_png: bytes | None = None) -> str:
    """One self-contained page: verdict, PSI table, plots embedded."""
    def img(png: bytes) -> str:
        return f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}">'

    colour = {"drift": "#c0392b", "no-drift": "#4c9a2a", "insufficient": "#e0a800"}[report.verdict]
    rows = "".join(
        f"<tr><td>{html.escape(c.name)}</td><td>{c.kind}</td><td>{c.psi:.4f}</td>"
        f"<td>{_bound(c.noise_bound)}</td>"
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
        f"<p>Input {html.escape(redact(report.input))}, {report.rows:,} rows, PSI threshold "
        f"{report.psi_threshold:g} (watch above {report.psi_threshold / 2:g}).</p>{metric}"
        f"{img(psi_png)}<h2>Distributions, most shifted first</h2>{img(dist_png)}"
        "<h2>PSI per column</h2><p>A column is marked only when its PSI exceeds both the "
        "threshold and its noise bound: the PSI two samples of one distribution reach by chance "
        "(chi-square for its bin count and both sample sizes).</p><table><tr><th>column</th>"
        "<th>kind</th><th>PSI</th><th>noise bound</th>"
        f"<th>status</th></tr>{rows}</table>"
        + attribution_drift.html_section(report, img(attribution_png) if attribution_png else "")
        + "</body></html>")


def _bound(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def write_report(report: DriftReport, reference: Profile, current: Profile, out_dir: Path
                 ) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    psi_png = plot_psi(report)
    dist_png = plot_distributions(reference, current, report)
    shares_png = attribution_drift.plot_attribution_shares(report, _png)
    files = {"drift_report.html": render_html(report, psi_png, dist_png, shares_png).encode(),
             "drift_psi.png": psi_png, "drift_distributions.png": dist_png,
             **({"drift_attributions.png": shares_png} if shares_png else {}),
             "drift_report.json": report.model_dump_json(indent=2).encode(),
             "batch_profile.json": current.model_dump_json().encode()}
    for name, data in files.items():
        (out_dir / name).write_bytes(data)
    return [out_dir / name for name in files]


def _mlflow(run: str | None) -> str:
    if not run:
        return "MLflow (not logged)"
    return f"[MLflow run]({run})" if run.startswith("http") else f"MLflow {run}"


def drift_markdown(report: DriftReport) -> str:
    lines = [f"# Drift: {report.model} v{report.version} — **{report.verdict}**", "",
             report.message, "", f"- input: {redact(report.input)} ({report.rows:,} rows)",
             f"- report (HTML, plots): {_mlflow(report.mlflow_run)}, artifacts drift/", ""]
    if report.columns:
        lines += ["| column | PSI | noise bound | status |", "|---|---|---|---|",
                  *[f"| {c.name} | {c.psi:.4f} | {_bound(c.noise_bound)} | {c.status} |"
                    for c in sorted(report.columns, key=lambda c: -c.psi)]]
    lines += attribution_drift.markdown_lines(report)
    return "\n".join(lines) + "\n"
