"""`mlops server start | stop | status`: the persistent local stack (Prefect UI + MLflow UI)."""

from __future__ import annotations

import typer

from mlops.app import JsonOption, app, print_json, settings, typer_app
from tasks.core.errors import ExitCode
from tasks.core.redact import redact

server_app = typer_app(
    "The local stack: a Prefect server with its UI and an MLflow server on the local store, "
    "running in the background with their state under MLOPS_HOME. While it is up, every mlops "
    "command uses it instead of starting a temporary Prefect server.")
app.add_typer(server_app, name="server")


def _urls_line(found) -> str:
    mlflow = found.mlflow_ui_url or f"http://127.0.0.1:{found.mlflow_port}"
    return (f"Prefect UI: http://127.0.0.1:{found.prefect_port} — MLflow UI: {mlflow} — "
            "stop with `mlops server stop` or `make stop`")


@server_app.command("start")
def server_start() -> None:
    """Start the Prefect server (127.0.0.1:MLOPS_PREFECT_PORT, default 4200) and the MLflow
    server (127.0.0.1:MLOPS_MLFLOW_PORT, default 5000) in the background and wait until both
    answer. Idempotent: servers already up are left alone. With an HTTP MLFLOW_TRACKING_URI only
    Prefect is started. The first start creates the Prefect database (about 30 s).
    Exit codes: 0 running, 1 a server did not start (its log is named), 2 a port is taken."""
    from mlops.local_server import environment
    from mlops.stack import start

    found = settings()
    start(found, environment(), typer.echo)
    typer.echo(_urls_line(found))


@server_app.command("stop")
def server_stop() -> None:
    """Stop the local stack's servers (their process groups; state stays under MLOPS_HOME).
    Exit codes: 0 stopped or nothing was running."""
    from mlops.local_server import environment
    from mlops.stack import stop

    stop(settings(), environment(), typer.echo)


@server_app.command("status")
def server_status(as_json: JsonOption = False) -> None:
    """Print each server's URL, pid and health. Exit codes: 0 every server is up, 1 one or more
    is down (start them with `mlops server start`)."""
    from mlops.local_server import environment
    from mlops.stack import services, state

    found = settings()
    states = [state(s, found.stack_dir) for s in services(found, environment())]
    if as_json:
        print_json({"servers": [
            {"name": c.service.name, "url": c.service.url, "pid": c.pid, "up": c.up}
            for c in states], "state_dir": str(found.stack_dir),
            "tracking_uri": None if found.tracking_uri.startswith("sqlite:")
            else redact(found.mlflow_ui_url or found.tracking_uri)})
        raise typer.Exit(ExitCode.DONE if all(s.up for s in states) else ExitCode.FAILED)
    for current in states:
        health = "healthy" if current.up else (
            "running, not answering" if current.pid else "down")
        pid = current.pid or "-"
        typer.echo(f"{current.service.name:<8} {current.service.url:<24} pid {pid!s:<8} {health}")
    if not found.tracking_uri.startswith("sqlite:"):
        typer.echo(f"mlflow   tracking on {redact(found.mlflow_ui_url or found.tracking_uri)} "
                   "(not managed here)")
    typer.echo(f"state and logs: {found.stack_dir}")
    if not all(s.up for s in states):
        raise typer.Exit(ExitCode.FAILED)
