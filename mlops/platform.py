"""`mlops ci | pools | schedules`: running the pipeline the Prefect way on GitLab runners."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast
from zoneinfo import ZoneInfo

import typer

from mlops.app import EXIT_CODES, JsonOption, app, need_server, print_json, print_table, settings, typer_app
from tasks.core.errors import ConfigError, ExitCode, MlopsError

if TYPE_CHECKING:
    from deployments.pools import PoolType as PoolKind


@app.command(epilog=EXIT_CODES)
def ci(
    timeout: Annotated[float | None, typer.Option(
        help="Stop watching after this many seconds (the runs go on).")] = None,
) -> None:
    """Start the deployment runs a GitLab commit message asks for (`train fraud damage`), stream
    their progress and wait.

    Reads CI_COMMIT_MESSAGE and CI_PIPELINE_ID (the pipeline id makes the runs idempotent: a
    retried job watches the runs it started before) and TRAINING_DATA_DATE (as-of date).
    The exit code is the worst run's, by its final state (a bad message or setup: 2).
    """
    import asyncio

    from deployments.ci import CiContext, check_targets, parse_targets, trigger
    from tasks.core.config import list_configs

    found = settings()
    ctx = CiContext.from_env(found.ci)
    targets = parse_targets(ctx.commit_message)
    if targets is None:
        typer.echo("commit message does not start with 'train <model>': nothing to start")
        return
    known = {p.stem for p, _ in list_configs(found.config_dir)}
    models = check_targets(targets, known, Path(found.ci.get("CI_PROJECT_DIR") or "."))
    need_server("mlops ci")
    code = asyncio.run(trigger(ctx, models, typer.echo, found.prefect_ui_url, timeout))
    raise typer.Exit(code)


pools_app = typer_app("Work pools mapped to GitLab runners (deployments/pools.yaml).")
app.add_typer(pools_app, name="pools")


class PoolType(StrEnum):
    """The Prefect worker types a pool can be (deployments/pools.py POOL_TYPES)."""

    gitlab_ci = "gitlab-ci"
    process = "process"
    docker = "docker"


PoolTypeOption = Annotated[PoolType | None, typer.Option(
    "--type", help="gitlab-ci (each run a GitLab job on runners with the pool's tag; the default "
                   "when CI_SERVER_URL and CI_PROJECT_ID are set), process (shell runners, or a "
                   "worker inside the training image; the default otherwise) or docker (Docker "
                   "hosts).")]


def _pool_type(value: PoolType | None) -> PoolKind:
    if value is None:
        ci = settings().ci
        return "gitlab-ci" if ci.get("CI_SERVER_URL") and ci.get("CI_PROJECT_ID") else "process"
    return cast("PoolKind", PoolType(value).value)  # the enum's values are the pool kinds


@pools_app.command("apply")
def pools_apply(pool_type: PoolTypeOption = None) -> None:
    """Create or update cpu-runners and gpu-runners on the Prefect server, the global
    concurrency limit `gpu` (one slot per GPU runner) and the automation that crashes flow runs
    whose heartbeats stopped (idempotent; deployments/pools.yaml `runners:` and `limits:`).
    Exit codes: 0 applied, 1 the Prefect server refused, 2 no server or a bad pool file."""
    import asyncio

    from deployments.automations import apply_limits
    from deployments.pools import apply_pools, load_limits, load_pools
    from tasks.adapters.stack_state import read_state

    kind = _pool_type(pool_type)
    need_server("mlops pools apply")
    found = settings()
    stack = read_state(found.stack_dir) or {}
    laptop = kind == "process" and stack.get("prefect_api_url") == found.prefect_api_url
    specs, limits = load_pools(), load_limits()
    results = asyncio.run(apply_pools(specs, kind, laptop))  # the laptop's own: laptop env
    for name, action in results:
        spec = specs[name]
        typer.echo(f"{name} ({kind}, {spec.device}, runners tagged {', '.join(spec.runner_tags)}): "
                   f"{action}")
    for line in asyncio.run(apply_limits(specs, limits)):
        typer.echo(line)
    if kind == "gitlab-ci":
        typer.echo("start one worker per pool next to the Prefect server (CI_SERVER_URL, "
                   "CI_PROJECT_ID and MLOPS_GITLAB_TOKEN set): prefect worker start --pool "
                   f"{next(iter(specs))}")


@pools_app.command("show")
def pools_show(
    name: Annotated[str, typer.Argument(help="Pool name from deployments/pools.yaml.")],
    pool_type: PoolTypeOption = None,
) -> None:
    """Print a pool's base job template (usable with `prefect work-pool create --base-job-template`).
    Exit codes: 0 printed, 2 an unknown pool or type."""
    from deployments.pools import base_job_template, load_pools, render

    kind = _pool_type(pool_type)
    specs = load_pools()
    if name not in specs:
        raise ConfigError(f"no pool {name!r} in deployments/pools.yaml (known: {', '.join(specs)})")
    typer.echo(render(base_job_template(specs[name], kind)), nl=False)


schedules_app = typer_app("Without a command: every deployment's schedule and next run. "
                          "migrate-from-gitlab moves GitLab pipeline schedules to Prefect. Exit codes: 0 "
                          "listed, 1 the server failed, 2 a bad prefect.yaml.",
                          invoke_without_command=True, no_args_is_help=False)
app.add_typer(schedules_app, name="schedules")


@schedules_app.callback()
def schedules(
    ctx: typer.Context,
    prefect_file: Annotated[Path, typer.Option(
        help="Read schedules from this file when PREFECT_API_URL is not set.")] = Path("prefect.yaml"),
    as_json: JsonOption = False,
) -> None:
    """List every deployment's schedule and next run (from the server when PREFECT_API_URL is set
    or the local stack is up, else from prefect.yaml). Exit codes: 0 listed, 1 the server
    failed, 2 a bad prefect.yaml."""
    import asyncio

    if ctx.invoked_subcommand:
        return

    from deployments.schedules import from_manifest, from_server

    api = settings().prefect_api_url
    if api:
        rows, where = asyncio.run(from_server()), api
    else:
        rows, where = from_manifest(prefect_file), f"{prefect_file} (no PREFECT_API_URL)"
    if as_json:
        print_json({"source": where, "schedules": [
            {"deployment": r.deployment, "slug": r.slug, "cron": r.cron, "timezone": r.timezone,
             "active": r.active, "next_run": r.next_run.isoformat() if r.next_run else None}
            for r in rows]})
        return
    typer.echo(f"schedules on {where}")
    print_table(("deployment", "slug", "cron", "timezone", "active", "next run"), [
        (r.deployment, r.slug, r.cron, r.timezone, "yes" if r.active else "no",
         r.next_run.astimezone(ZoneInfo(r.timezone)).strftime("%Y-%m-%d %H:%M %Z")
         if r.next_run else "-") for r in rows])


@schedules_app.command("migrate-from-gitlab")
def migrate_from_gitlab(
    apply_: Annotated[bool, typer.Option(
        "--apply", help="Create the Prefect schedules and deactivate the GitLab ones (default: "
                        "only show what would happen).")] = False,
) -> None:
    """Read the project's GitLab pipeline schedules (CI_SERVER_URL, CI_PROJECT_ID,
    MLOPS_GITLAB_TOKEN) and show the equivalent Prefect schedules and prefect.yaml entries.
    SCHEDULED_RETRAIN=true retrains every model, MODEL/MODELS name some, TRAINING_DATA_DATE
    becomes as_of. A cron Prefect cannot take is reported and never applied.
    Exit codes: 0 planned or applied, 1 GitLab or Prefect failed, 2 a schedule that cannot be
    migrated or missing GitLab settings."""
    import asyncio

    from deployments.gitlab_schedules import apply, plan, yaml_entries
    from tasks.adapters.gitlab import open_gitlab, skipped
    from tasks.core.config import list_configs

    gitlab = open_gitlab(settings().gitlab)
    if gitlab is None:
        raise ConfigError(skipped("schedule migration").replace(" skipped", " unavailable"))
    models = [p.stem for p, _ in list_configs(settings().config_dir)]
    found = gitlab.pipeline_schedules()
    if found is None:
        raise MlopsError("could not read the GitLab pipeline schedules (see the warning above)")
    migrations = plan(found, models)
    if not migrations:
        typer.echo("no pipeline schedules in this GitLab project")
        return
    print_table(("gitlab id", "description", "cron", "timezone", "→ Prefect", "parameters"), [
        (str(m.gitlab_id), m.description[:30], m.cron, m.timezone,
         ("inactive in GitLab, skipped" if not m.active else
          f"NOT MIGRATED: {m.problem}" if m.problem else ", ".join(m.targets)),
         ", ".join(f"{k}={v}" for k, v in m.parameters.items()) or "-") for m in migrations])
    ready = [m for m in migrations if m.ok]
    if ready:
        typer.echo("\nprefect.yaml entries (under each deployment's schedules:):")
        for m in ready:
            typer.echo(yaml_entries(m))
    if not apply_:
        typer.echo("\ndry run: nothing changed (add --apply to create them and deactivate the "
                   "GitLab schedules)")
    else:
        need_server("mlops schedules migrate-from-gitlab --apply")
        for line in asyncio.run(apply(migrations, gitlab)):
            typer.echo(line)
    if any(m.problem and m.active for m in migrations):
        raise typer.Exit(ExitCode.BAD_INPUT)
