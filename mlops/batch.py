"""`mlops score | monitor | generate`: batch scoring, drift checks and synthetic claims."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlops.app import app, model_config, print_table, run_flow
from tasks.core.errors import DRIFT_EXITS, ConfigError

DayOption = Annotated[str | None, typer.Option(
    help="Date that replaces {date} in locations (YYYY-MM-DD; default today, UTC).")]


@app.command()
def score(
    model: Annotated[str, typer.Argument(help="Model name (or YAML path); its champion scores.")],
    input_: Annotated[str, typer.Option(
        "--input", help="Claims to score: .parquet, .csv, or snowflake:<query>. {date} is "
                        "replaced by --day.")],
    output: Annotated[str, typer.Option(
        help="Where predictions go: .parquet, .csv, or snowflake:<table>; written atomically.")],
    keep: Annotated[list[str] | None, typer.Option(
        help="Input column to copy next to the predictions (repeatable; default: id columns).")
    ] = None,
    day: DayOption = None,
    explain: Annotated[int, typer.Option(
        help="Also write each row's K largest SHAP contributions (explain_<i>_feature, "
             "explain_<i>_contribution; tree SHAP in margin units). At most the model's "
             "feature count.", min=0, metavar="K")] = 0,
) -> None:
    """Score a batch with the model's champion (@champion), after checking its files against
    the registered SHA-256. Reads in Arrow batches, so memory stays flat however large the input.
    Exit codes: 0 scored, 1 failed or tampered model, 2 bad input (--explain above the feature
    count included) or no champion."""
    from flows.scoring import batch_scoring
    from tasks.core.credentials import hide
    from tasks.reports.format import fmt

    when = _checked(model, day, inputs=(input_,), outputs=(output,))
    # the flow's parameters carry the locations redacted; this process opens them itself
    input_, output = hide(input_), hide(output)
    summary = run_flow(lambda: batch_scoring(model, input_, output, when, keep or None, explain))
    # the run logged its one-line summary already: the command ends with the table, not a repeat
    print_table(("model", "version", "rows", "seconds", "rows/s", "output",
                 *summary.distribution), [
        (summary.model, f"v{summary.version}", f"{summary.rows:,}", f"{summary.seconds:.1f}",
         f"{summary.rows_per_s:,.0f}", summary.output,
         *(fmt(v) for v in summary.distribution.values()))])
    if summary.ignored:
        typer.echo(f"ignored input columns: {', '.join(summary.ignored)}")


@app.command()
def monitor(
    model: Annotated[str, typer.Argument(help="Model name (or YAML path).")],
    input_: Annotated[str, typer.Option(
        "--input", help="Recent scoring inputs: .parquet, .csv, or snowflake:<query> (with the "
                        "label column, the primary metric is checked too).")],
    day: DayOption = None,
) -> None:
    """Compare a batch with the champion's training profile: PSI per feature and for the
    predictions. Exit codes: 0 no drift, 4 drift (a report goes to MLflow and, with a Prefect
    server, the drift event starts a retrain), 2 bad input or too few rows for a verdict,
    1 failed."""
    from flows.monitoring import monitoring
    from tasks.core.credentials import hide
    from tasks.reports.format import fmt

    when = _checked(model, day, inputs=(input_,))
    report = run_flow(lambda: monitoring(model, hide(input_), when))
    if report.columns:
        print_table(("column", "PSI", "status"), [
            (c.name, fmt(c.psi), c.status.upper() if c.status == "drift" else c.status)
            for c in sorted(report.columns, key=lambda c: -c.psi)])
    if report.moved_attributions:
        typer.echo("\nattribution moved (share of mean |SHAP|): " + ", ".join(
            f"{a.name} {a.reference_share:.0%} -> {a.current_share:.0%}"
            for a in report.moved_attributions))
    if report.metric:
        typer.echo(f"\nlabelled {report.metric}: {fmt(report.metric_current)} "
                   f"(at registration {fmt(report.metric_reference)})")
    typer.echo(f"\n{report.model} v{report.version}: {report.verdict.upper()}: {report.message}")
    typer.echo(f"report: {report.mlflow_run}")
    raise typer.Exit(DRIFT_EXITS[report.verdict])


def _checked(model: str, day: str | None, inputs: tuple[str, ...] = (),
             outputs: tuple[str, ...] = ()):
    """The model's config is valid, --day is a date (or None), local inputs exist and every
    location has a known format, before any server starts or any flow run exists."""
    from datetime import UTC, date, datetime

    model_config(model)
    try:
        when = None if day is None else date.fromisoformat(day)
    except ValueError:
        raise ConfigError(f"--day must be a date like 2026-11-22, got {day!r}") from None
    stamp = (when or datetime.now(UTC).date()).isoformat()
    for location in inputs:
        _check_location(location.replace("{date}", stamp), "input")
    for location in outputs:
        _check_location(location.replace("{date}", stamp), "output")
    return when


def _check_location(location: str, role: str) -> None:
    """A file location's format; a local input exists, a local output is not a folder and its
    nearest existing folder is writable. Remote URLs and Snowflake are checked by the run."""
    import os

    from tasks.adapters.locations import SNOWFLAKE, check_exists, file_format
    from tasks.core.errors import DataError

    if location.startswith(SNOWFLAKE):
        return
    file_format(location, role)
    if "://" in location and not location.startswith("file://"):
        return
    if role == "input":
        check_exists(location)
        return
    path = Path(location.removeprefix("file://"))
    if path.is_dir():
        raise DataError(f"output {location} is a folder, not a file")
    folder = path.parent.resolve()
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise DataError(f"output {location}: cannot write under {folder}")


@app.command()
def generate(
    rows: Annotated[int, typer.Option(help="Number of claims to generate.", min=1)],
    output: Annotated[Path, typer.Option(help="Output file: .csv or .parquet.")],
    drift: Annotated[float, typer.Option(help="Distribution shift (0 = reference).", min=0)] = 0.0,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same rows).")] = 7,
    parts: Annotated[int, typer.Option(
        help="Write a Parquet dataset: OUTPUT is a folder that gets this many part-NNNNN.parquet "
             "files (a table that trains by streaming).", min=1)] = 1,
) -> None:
    """Write deterministic synthetic claims with the fraud, damage and settlement targets.
    Exit codes: 0 written, 2 bad options or an unknown file type."""
    from tasks.adapters.sinks import write_frame
    from tasks.training.synthetic import generate_claims, write_parts

    claims = generate_claims(rows, seed=seed, drift=drift)
    if parts > 1:
        write_parts(claims, output, parts, write_frame)
        typer.echo(f"wrote {rows} claims to {output}/ in {parts} Parquet files "
                   f"(seed {seed}, drift {drift})")
        return
    write_frame(claims, output)
    typer.echo(f"wrote {rows} claims to {output} (seed {seed}, drift {drift})")
