"""`mlops status` and `mlops --version`: what is in production and what is waiting, at a glance."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from mlops.app import app, print_table, settings


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"prefect-mlops {version('prefect-mlops')}")
        except PackageNotFoundError:
            typer.echo("prefect-mlops (not installed as a package)")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print the installed prefect-mlops version and exit.")] = False,
) -> None:
    """prefect-mlops (global options)."""


@app.command()
def status(
    model: Annotated[str | None, typer.Argument(
        help="One model under configs/models (default: every configured model).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
    prefect_file: Annotated[Path, typer.Option(
        help="Where next scheduled runs are read from when there is no Prefect server.")
    ] = Path("prefect.yaml"),
) -> None:
    """Per model: the champion, staging and challenger versions with the gate metric, pending
    approvals with their links, the last training, scoring and monitoring runs and the next
    scheduled runs. The registry parts work without a Prefect server; the Prefect parts
    (pending approvals, scoring runs, next runs from the server) say when there is none, and
    next runs then come from prefect.yaml. Exit codes: 0 shown, 1 the registry or the Prefect
    server failed, 2 an unknown model, a bad setting, or an alias moved outside the pipeline
    (shown, then refused)."""
    from deployments.overview import NO_SERVER, from_prefect, from_registry, next_runs
    from mlops.reads import read_registry
    from tasks.core.config import list_configs, load_named_config
    from tasks.core.redact import redact
    from tasks.reports.format import fmt_any

    found = settings()
    if model:
        configs = [load_named_config(model, found.config_dir)]
    else:
        configs = [cfg for _, cfg in list_configs(found.config_dir)
                   if not isinstance(cfg, Exception)]
    registry = read_registry(found)
    statuses = {cfg.name: from_registry(found, registry, cfg) for cfg in configs}
    server = bool(found.prefect_api_url)
    if server:
        from_prefect(found, statuses)
    next_runs(statuses, server, prefect_file, found.prefect_api_url)
    mlflow_ui = redact(found.mlflow_ui_url) if found.mlflow_ui_url else None
    if as_json:
        typer.echo(json.dumps({
            "prefect": found.prefect_ui_url, "mlflow": mlflow_ui,
            "tracking_uri": redact(found.tracking_uri) if found.tracking_uri.startswith("http")
            else "local store", "models": [asdict(s) for s in statuses.values()]}, indent=2))
        _refuse_moved(statuses.values())
        return
    where = found.prefect_ui_url or NO_SERVER
    typer.echo(f"Prefect: {where}   MLflow UI: {mlflow_ui or 'none (mlops server start)'}")
    for s in statuses.values():
        typer.echo(f"\n== {s.model}: " + ", ".join(
            f"@{a.alias} " + (f"v{a.version}" + (f" ({a.metric} {fmt_any(a.value)})" if a.metric else "")
                              if a.version else "-") for a in s.aliases))
        for moved in s.moved:
            typer.echo(f"   !! {moved}", err=True)
        if s.pending is None:
            typer.echo(f"   pending approvals: unknown, {NO_SERVER}")
        elif s.pending:
            for p in s.pending:
                typer.echo(f"   WAITING FOR APPROVAL: v{p.version} {p.link} "
                           f"(or `mlops approve {s.model}`)")
        else:
            typer.echo("   pending approvals: none")
        if s.last:
            print_table(("last", "when (UTC)", "outcome", "detail", "link"), [
                (r.kind, r.when[:19].replace("T", " "), r.outcome, r.detail, r.link)
                for r in sorted(s.last, key=lambda r: r.kind)])
        if not server:
            typer.echo(f"   last scoring runs: unknown, {NO_SERVER}")
        if s.next_runs:
            typer.echo("   next: " + "; ".join(f"{r.deployment} at {r.when} ({r.source})"
                                                for r in s.next_runs[:3]))
    _refuse_moved(statuses.values())


def _refuse_moved(statuses) -> None:
    """Shown, then refused: an alias moved outside the pipeline is exit 2 (TrailMismatch)."""
    from tasks.core.errors import TrailMismatch, first_of

    moved = [m for s in statuses for m in s.moved]
    if moved:
        raise TrailMismatch(first_of(moved))
