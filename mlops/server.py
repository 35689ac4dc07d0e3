"""`mlops server start | stop | status`: the persistent local stack (Prefect UI + MLflow UI, a
process worker per work pool, and the Prefect profile `mlops-local` pointing at it)."""

from __future__ import annotations

from typing import Annotated

import typer

from mlops.app import JsonOption, app, print_json, settings, typer_app
from tasks.core.errors import ExitCode
from tasks.core.redact import redact

server_app = typer_app(
    "The local stack: a Prefect server with its UI, an MLflow server on the local store and a "
    "process worker per work pool, running in the background with their state under "
    "MLOPS_HOME; the Prefect profile mlops-local points plain `prefect` commands at it. While "
    "it is up, every mlops command uses it instead of starting a temporary Prefect server.")
app.add_typer(server_app, name="server")


def _urls_line(found) -> str:
    mlflow = found.mlflow_ui_url or f"http://127.0.0.1:{found.mlflow_port}"
    return (f"Prefect UI: http://127.0.0.1:{found.prefect_port} — MLflow UI: {mlflow} — "
            "stop with `mlops server stop` or `make stop`")


@server_app.command("start")
def server_start(
    workers: Annotated[bool, typer.Option(
        "--workers/--no-workers", help="Also make cpu-runners and gpu-runners process pools "
                                       "(deployments/pools.yaml, laptop env) and start a process "
                                       "worker for each.")] = True,
    profile: Annotated[bool, typer.Option(
        "--profile/--no-profile", help="Create and activate the Prefect profile mlops-local "
                                       "(PREFECT_API_URL of this stack) in PREFECT_HOME's "
                                       "profiles.toml.")] = True,
) -> None:
    """Start the Prefect server (127.0.0.1:MLOPS_PREFECT_PORT, default 4200) and the MLflow
    server (127.0.0.1:MLOPS_MLFLOW_PORT, default 5000) in the background and wait until both
    answer, then the workers, then activate the profile. Idempotent: what is already up is left
    alone. With an HTTP MLFLOW_TRACKING_URI only Prefect is started. The first start creates the
    Prefect database (about 30 s).
    Exit codes: 0 running, 1 a server did not start (its log is named), 2 a port is taken."""
    from mlops.laptop import api_url, apply_laptop_limits, apply_laptop_pools
    from mlops.laptop import workers as worker_services
    from mlops.local_server import environment
    from mlops.stack import start, start_services

    found, env = settings(), environment()
    start(found, env, typer.echo)
    if workers:
        for name, action in apply_laptop_pools(found):
            typer.echo(f"work pool {name} (process, laptop): {action}")
        for line in apply_laptop_limits(found):
            typer.echo(line)
        start_services(worker_services(found, env), found.stack_dir, found.server_startup_s,
                       typer.echo)
    if profile:
        from mlops.profile import PROFILE, activate

        previous = activate(api_url(found), found.stack_dir)
        was = "" if previous == PROFILE else f" (was {previous or 'none'})"
        typer.echo(f"Prefect profile {PROFILE} is active{was}: plain `prefect` commands use "
                   f"{api_url(found)}")
    typer.echo(_urls_line(found))


@server_app.command("stop")
def server_stop(
    purge: Annotated[bool, typer.Option(
        "--purge", help="First remove every deployment, automation and work pool from the "
                        "stack's Prefect server (what `prefect deploy --all` and the start "
                        "made); runs, models and MLflow data stay.")] = False,
) -> None:
    """Stop the workers and the servers (their process groups; state stays under MLOPS_HOME)
    and activate the Prefect profile that was active before `mlops server start`.
    Exit codes: 0 stopped or nothing was running, 1 the purge failed (nothing stopped),
    2 --purge while the Prefect server is down."""
    from mlops.laptop import purge as purge_deployed
    from mlops.laptop import workers as worker_services
    from mlops.local_server import environment
    from mlops.profile import deactivate
    from mlops.stack import services, state, stop, stop_services
    from tasks.core.errors import ConfigError

    found, env = settings(), environment()
    if purge and not state(services(found, env)[0], found.stack_dir).up:
        raise ConfigError("--purge needs the stack's Prefect server: start it with "
                          "`mlops server start --no-workers`, then stop with --purge")
    stop_services(worker_services(found, env), found.stack_dir, typer.echo)
    if purge:
        purge_deployed(found, typer.echo)
    stop(found, env, typer.echo)
    back = deactivate(found.stack_dir)
    if back is not None:
        typer.echo(f"Prefect profile {back} is active again")


@server_app.command("status")
def server_status(as_json: JsonOption = False) -> None:
    """Print each server's and worker's URL or pool, pid and health, and the active Prefect
    profile. Exit codes: 0 everything started is up, 1 a server or a started worker is down
    (start them with `mlops server start`)."""
    from mlops.laptop import api_url
    from mlops.laptop import workers as worker_services
    from mlops.local_server import environment
    from mlops.profile import PROFILE, active
    from mlops.stack import services, state

    found, env = settings(), environment()
    states = [state(s, found.stack_dir)
              for s in [*services(found, env), *worker_services(found, env)]]
    # a worker never started (`--no-workers`) has no pid file; one that died keeps it
    ok = all(s.up or (s.service.health is None and not s.service.pid_file(
        found.stack_dir).exists()) for s in states)
    name, url = active(env)
    if as_json:
        print_json({"servers": [
            {"name": c.service.name, "url": c.service.url, "pid": c.pid, "up": c.up}
            for c in states if c.service.health is not None],
            "workers": [{"name": c.service.name, "pool": c.service.url.removeprefix("pool "),
                         "pid": c.pid, "up": c.up} for c in states if c.service.health is None],
            "state_dir": str(found.stack_dir),
            "prefect_api_url": api_url(found), "profile": name, "profile_api_url": url,
            "tracking_uri": None if found.tracking_uri.startswith("sqlite:")
            else redact(found.mlflow_ui_url or found.tracking_uri)})
        raise typer.Exit(ExitCode.DONE if ok else ExitCode.FAILED)
    for current in states:
        if current.service.health is None:
            health = "running" if current.up else "down"
        else:
            health = "healthy" if current.up else (
                "running, not answering" if current.pid else "down")
        pid = current.pid or "-"
        typer.echo(f"{current.service.name:<20} {current.service.url:<24} pid {pid!s:<8} "
                   f"{health}")
    typer.echo(f"Prefect API: {api_url(found)}")
    if not found.tracking_uri.startswith("sqlite:"):
        typer.echo(f"mlflow   tracking on {redact(found.mlflow_ui_url or found.tracking_uri)} "
                   "(not managed here)")
    ours = " (this stack)" if name == PROFILE and url == api_url(found) else ""
    typer.echo(f"Prefect profile: {name or 'none'}{ours}, PREFECT_API_URL {url or 'not set'}")
    typer.echo(f"state and logs: {found.stack_dir}")
    if not ok:
        raise typer.Exit(ExitCode.FAILED)
