"""The validation report: as markdown, in a file and as a Prefect artifact, pass or fail."""

from __future__ import annotations

from pathlib import Path

from tasks.contracts.training import ValidationReport
from tasks.core.steps import artifact_key, step


def validation_markdown(report: ValidationReport) -> str:
    status = "passed" if report.passed else "FAILED"
    lines = [f"# Validation report: {status}", "",
             f"- rows: {report.rows}", f"- target: `{report.target}`",
             f"- features: {len(report.features)} ({len(report.categorical)} categorical)"]
    if report.class_counts:
        balance = ", ".join(f"{k}: {v}" for k, v in report.class_counts.items())
        lines.append(f"- classes: {balance}")
    for title, items in (("Errors", report.errors), ("Warnings", report.warnings)):
        if items:
            lines += ["", f"## {title}", *[f"- {item}" for item in items]]
    lines += ["", "## Columns", "", "| column | role | dtype | nulls | unique | min | max |",
              "|---|---|---|---|---|---|---|"]
    for c in report.columns:
        lo = "" if c.min is None else f"{c.min:.4g}"
        hi = "" if c.max is None else f"{c.max:.4g}"
        lines.append(f"| {c.name} | {c.role} | {c.dtype} | {c.nulls} | {c.unique} | {lo} | {hi} |")
    return "\n".join(lines) + "\n"


@step("publish-validation")
def publish_validation(report: ValidationReport, model: str, reports_dir: Path) -> str:
    """The report as `<reports_dir>/<model>/validation.md` and a Prefect artifact."""
    from prefect.artifacts import create_markdown_artifact

    path = reports_dir / model / "validation.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    markdown = validation_markdown(report)
    path.write_text(markdown)
    create_markdown_artifact(key=artifact_key(model, "validation"), markdown=markdown,
                             description=f"Validation report for {model}")
    return str(path)
