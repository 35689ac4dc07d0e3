"""What batch runs leave for people: the scoring summary and the dated rows of the model's
wiki page (newest first)."""

from __future__ import annotations

from tasks.contracts.batch import DriftReport, ScoringSummary
from tasks.core.redact import redact


def scoring_markdown(summary: ScoringSummary) -> str:
    lines = [f"# Batch scoring: {summary.model} v{summary.version}", "",
             f"- input: {redact(summary.input)}", f"- output: {redact(summary.output)}",
             f"- rows: {summary.rows:,} in {summary.seconds:.1f} s ({summary.rows_per_s:,.0f} rows/s)",
             f"- columns kept with the predictions: {', '.join(summary.kept) or 'none'}",
             f"- input columns ignored: {', '.join(summary.ignored) or 'none'}",
             f"- scored at: {summary.scored_at}", "", "| prediction | value |", "|---|---|",
             *[f"| {k} | {v:.4g} |" for k, v in summary.distribution.items()]]
    return "\n".join(lines) + "\n"


def wiki_header(model: str) -> str:
    return (f"# {model}: batch scoring and monitoring\n\nWritten by prefect-mlops after every "
            "scoring and monitoring run, newest first.\n\n"
            "| when (UTC) | run | version | rows | result | details |\n|---|---|---|---|---|---|")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def scoring_row(summary: ScoringSummary) -> str:
    shown = ", ".join(f"{k} {v:.3g}" for k, v in list(summary.distribution.items())[:3])
    return (f"| {summary.scored_at[:16].replace('T', ' ')} | batch-scoring | v{summary.version} | "
            f"{summary.rows:,} | {summary.rows_per_s:,.0f} rows/s → {_cell(summary.output)} | "
            f"{_cell(shown)} |")


def monitoring_row(report: DriftReport, when: str) -> str:
    worst = max(report.columns, key=lambda c: c.psi, default=None)
    details = f"largest PSI {worst.name} {worst.psi:.4f}" if worst else report.message
    if report.metric_current is not None:
        details += f"; {report.metric} {report.metric_current:.4f}"
    link = f" ([report]({report.mlflow_run}))" if (report.mlflow_run or "").startswith("http") else ""
    return (f"| {when} | monitoring | v{report.version} | {report.rows:,} | "
            f"**{report.verdict}** | {_cell(details)}{link} |")
