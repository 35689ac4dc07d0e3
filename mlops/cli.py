"""`mlops`: the command line. Commands load config and call flows; errors are one line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

from mlops.environment import apply_defaults

apply_defaults()

import typer  # noqa: E402

from mlops.local_server import LocalServer, start_if_needed  # noqa: E402
from tasks.core.errors import ConfigError, MlopsError  # noqa: E402

app = typer.Typer(
    help="prefect-mlops: validate → train → evaluate → gate → register → deploy models as Prefect "
         "flows tracked in MLflow, then score batches and watch for drift.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(exc: BaseException) -> typer.Exit:
    code = exc.exit_code if isinstance(exc, MlopsError) else 1
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not isinstance(exc, MlopsError):
        message = f"{type(exc).__name__}: {message}"
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _settings():
    from tasks.core.settings import Settings

    return Settings.from_env()


def _model(model: str):
    """Settings and the model's validated config."""
    from tasks.core.config import load_config

    settings = _settings()
    return settings, load_config(model, settings.config_dir)


@app.command()
def train(
    models: Annotated[list[str], typer.Argument(
        help="Model names under configs/models (or YAML paths), or notebooks (.ipynb); several "
             "run in turn.")],
    force: Annotated[bool, typer.Option(
        "--force", help="Run the flow even when an identical earlier run registered a version.")
    ] = False,
) -> None:
    """Run validate → train → evaluate → gate → register for each model, then print a summary.

    A model whose data, config and code are unchanged since a registered version is reported
    as up to date without starting Prefect (use --force to run the flow anyway). A notebook is
    executed with papermill (is_local_development=False, the device injected) and kept with
    what it logged in an MLflow run of experiment notebooks/<name>.
    """
    from tasks.core.config import load_config
    from tasks.reuse import up_to_date

    notebooks = [m for m in models if m.endswith(".ipynb")]
    if notebooks:
        _train_notebooks(notebooks)
        models = [m for m in models if m not in notebooks]
        if not models:
            return

    rows: list[tuple[str, ...]] = []
    todo: list[str] = []
    try:  # every config is checked before anything starts
        settings = _settings()
        configs = {model: load_config(model, settings.config_dir) for model in models}
    except MlopsError as exc:
        raise fail(exc) from None
    # the temporary Prefect server boots (~8 s) while the up-to-date check runs
    server = start_if_needed()
    try:
        for model, cfg in configs.items():
            ref = None if force else up_to_date(cfg, settings)
            if ref is None:
                todo.append(model)
            else:
                typer.echo(f"{cfg.name}: up to date (v{ref.version} was trained on the same "
                           "data, config and code)")
                rows.append((cfg.name, ref.version, ref.tags.get("gate_metric", ""),
                             ref.tags.get("gate_value", ""), "passed (up to date)"))
    except MlopsError as exc:
        raise fail(exc) from None
    first_code = _run_flows(todo, rows, server) if todo else 0
    if server is not None and not todo:
        server.stop()
    _print_table(("model", "version", "metric", "value", "gate"), rows)
    if first_code:
        raise typer.Exit(first_code)


def _train_notebooks(notebooks: list[str]) -> None:
    from flows.notebook import notebook_training
    from tasks.notebook import check_notebook

    try:
        for notebook in notebooks:
            check_notebook(notebook)
    except MlopsError as exc:
        raise fail(exc) from None
    for notebook in notebooks:
        result = _run_one_flow(lambda nb=notebook: notebook_training(nb))
        shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(result.metrics.items()))
        typer.echo(f"{notebook}: executed in {result.seconds:.0f} s; {shown or 'no metrics'}; "
                   f"MLflow {result.run_url}")


def _run_flows(models: list[str], rows: list[tuple[str, ...]], server: LocalServer | None,
               **deploy: object) -> int:
    from flows.training import training_pipeline

    if server is not None:
        typer.echo(f"started a temporary Prefect server at {server.api_url} "
                   "(set PREFECT_API_URL to use your own)")
        server.wait_ready(float(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]))
    first_code = 0
    for model in models:
        try:
            result = training_pipeline(model, **deploy)
            value = "" if result.value is None else f"{result.value:.4f}"
            note = " (reused)" if result.reused else ""
            row = (result.model, result.version, result.metric, value, result.gate + note)
            if result.deployment is not None:
                row += (result.deployment.production,)
                typer.echo(result.deployment.message)
            rows.append(row)
        except (MlopsError, Exception) as exc:  # summarise every model, then exit with the first code
            err = fail(exc)
            first_code = first_code or err.exit_code
            why = str(exc).splitlines()[0][:70] if str(exc) else "failed"
            rows.append((model, "-", "-", "-", why) + (("-",) if deploy else ()))
    return first_code


@app.command()
def run(
    models: Annotated[list[str], typer.Argument(
        help="Model names under configs/models (or YAML paths); several run in turn.")],
    approve_as: Annotated[str | None, typer.Option(
        "--approve-as", help="Approve production up front as this person (checked against "
                             "deploy.production.approvers).")] = None,
    comment: Annotated[str, typer.Option(help="Comment kept with the approval.")] = "",
) -> None:
    """Run the whole pipeline: validate → train → evaluate → gate → register → deploy.

    Deploy moves the staging alias, serves the version and smoke-tests it, then promotes it to
    production. With your own Prefect server (PREFECT_API_URL) the run pauses for approval in
    the UI or `mlops approve`; without one, approve up front with --approve-as or the run stops
    after staging and says how to continue (`mlops promote`).
    """
    from tasks.core.config import load_config

    try:
        settings = _settings()
        for model in models:
            load_config(model, settings.config_dir)
    except MlopsError as exc:
        raise fail(exc) from None
    # only a server of the user's outlives this command, so only there can a pause be answered
    users_server = bool(os.environ.get("PREFECT_API_URL"))
    server = start_if_needed()
    if approve_as:
        typer.echo(f"production approval given up front by {approve_as}")
    rows: list[tuple[str, ...]] = []
    code = _run_flows(models, rows, server, deploy=True, approve_as=approve_as, comment=comment,
                      wait_for_approval=users_server)
    _print_table(("model", "version", "metric", "value", "gate", "production"), rows)
    if code:
        raise typer.Exit(code)


@app.command()
def promote(
    model: Annotated[str, typer.Argument(help="Model name (or YAML path).")],
    version: Annotated[str, typer.Option(help="Registered version to promote.")],
    as_: Annotated[str, typer.Option("--as", help="Approver's name.")],
    comment: Annotated[str, typer.Option(help="Comment kept in the audit trail.")] = "",
) -> None:
    """Approve and promote a staged version to production (freeze windows and post-deploy
    checks apply; a failed check rolls back automatically)."""
    from tasks.adapters.registries import open_registry
    from tasks.deploy import check_approver
    from tasks.deploy import promote as promote_version

    try:
        settings, cfg = _model(model)
        check_approver(cfg, as_)
        previous = promote_version(open_registry(settings), cfg, version, as_, comment)
    except MlopsError as exc:
        raise fail(exc) from None
    typer.echo(f"{cfg.name}@{cfg.deploy.production.alias}: v{previous or '-'} -> v{version} "
               f"(approved by {as_})")


@app.command()
def approve(
    flow_run_id: Annotated[str, typer.Argument(help="The paused flow run (from the log or UI).")],
    as_: Annotated[str, typer.Option("--as", help="Approver's name.")],
    reject_: Annotated[bool, typer.Option("--reject", help="Reject instead of approving.")] = False,
    comment: Annotated[str, typer.Option(help="Comment kept in the audit trail.")] = "",
) -> None:
    """Answer a flow run paused for production approval (needs PREFECT_API_URL)."""
    from deployments.approval import answer_paused_run

    try:
        message = answer_paused_run(flow_run_id, as_, not reject_, comment, _settings())
    except MlopsError as exc:
        raise fail(exc) from None
    typer.echo(message)


@app.command()
def rollback(
    model: Annotated[str, typer.Argument(help="Model name (or YAML path).")],
    to: Annotated[str | None, typer.Option(
        help="Version to go back to (default: the champion before the current one).")] = None,
    as_: Annotated[str, typer.Option("--as", help="Who rolls back (audit trail).")] = "operator",
    comment: Annotated[str, typer.Option(help="Why (audit trail).")] = "",
) -> None:
    """Move the champion alias back by hand."""
    from tasks.adapters.registries import open_registry
    from tasks.deploy import rollback as rollback_champion

    try:
        settings, cfg = _model(model)
        current, target = rollback_champion(open_registry(settings), cfg, as_, to, comment)
    except MlopsError as exc:
        raise fail(exc) from None
    after = f"v{target}" if target else "none (the first champion was rolled back)"
    typer.echo(f"{cfg.name}@{cfg.deploy.production.alias}: v{current} -> {after}")


@app.command()
def history(
    model: Annotated[str, typer.Argument(help="Model name (or YAML path).")],
) -> None:
    """Print the audit trail: every staging, promotion, rejection and rollback."""
    from tasks.adapters.registries import open_registry

    try:
        settings, cfg = _model(model)
        events = open_registry(settings).events(cfg.name)
    except MlopsError as exc:
        raise fail(exc) from None
    if not events:
        typer.echo(f"no deployment history for {cfg.name}")
        return
    rows = [(e.get("at", "")[:19].replace("T", " "), e.get("action", ""),
             e.get("environment", ""), f"{e.get('from_version') or '-'} -> "
             f"{e.get('to_version') or '-'}", e.get("actor", ""),
             (e.get("comment") or e.get("reason") or "")[:60], e.get("flow_run_id", "")[:8])
            for e in events]
    _print_table(("when (UTC)", "action", "env", "version", "who", "comment / reason",
                  "flow run"), rows)


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    typer.echo("\n" + line + "\n" + "  ".join("-" * w for w in widths))
    for row in rows:
        typer.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


@app.command()
def models() -> None:
    """List the configured models under configs/models (MLOPS_CONFIG_DIR)."""
    from tasks.core.config import ConfigError, list_configs

    try:
        settings = _settings()
        found = list_configs(settings.config_dir)
    except MlopsError as exc:
        raise fail(exc) from None
    if not found:
        typer.echo(f"no model configs in {settings.config_dir}")
        return
    rows = []
    for path, cfg in found:
        if isinstance(cfg, ConfigError):
            rows.append((path.stem, "INVALID", "-", "-", str(cfg)))
        else:
            rows.append((cfg.name, cfg.task, cfg.target, cfg.gate.metric, cfg.data.source))
    _print_table(("model", "task", "target", "gate metric", "data"), rows)
    if any(r[1] == "INVALID" for r in rows):
        raise typer.Exit(2)


@app.command("check-config")
def check_config(
    path: Annotated[Path, typer.Argument(help="Model YAML to validate.")],
) -> None:
    """Validate a model YAML against the schema; exit 2 with the offending key if it is wrong."""
    from tasks.core.config import load_config

    try:
        cfg = load_config(str(path), _settings().config_dir)
    except MlopsError as exc:
        raise fail(exc) from None
    typer.echo(f"{path}: ok ({cfg.name}, {cfg.task}, target {cfg.target}, "
               f"gate {cfg.gate.metric} {cfg.gate.threshold})")


@app.command("check-deployments")
def check_deployments(
    prefect_file: Annotated[Path, typer.Option(help="The prefect.yaml to check.")] = Path("prefect.yaml"),
) -> None:
    """Check prefect.yaml against configs/models and deployments/pools.yaml: every model has its
    training-pipeline deployment on the work pool its config names, with the weekly schedule and
    the retrain-on-drift trigger, and daily batch-scoring and monitoring deployments."""
    from deployments.manifest import check_manifest

    try:
        problems = check_manifest(prefect_file, _settings().config_dir)
    except MlopsError as exc:
        raise fail(exc) from None
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        raise typer.Exit(2)
    typer.echo(f"{prefect_file}: ok")


def _need_server(what: str) -> None:
    if not os.environ.get("PREFECT_API_URL"):
        raise fail(ConfigError(f"PREFECT_API_URL is not set: {what} needs your Prefect server "
                              "(e.g. export PREFECT_API_URL=http://127.0.0.1:4200/api)"))


@app.command()
def ci(
    timeout: Annotated[float | None, typer.Option(
        help="Stop watching after this many seconds (the runs go on).")] = None,
) -> None:
    """Start the deployment runs a GitLab commit message asks for (`train fraud damage`), stream
    their progress and wait.

    Reads CI_COMMIT_MESSAGE and CI_PIPELINE_ID (the pipeline id makes the runs idempotent: a
    retried job watches the runs it started before) and TRAINING_DATA_DATE (as-of date).
    Exit 0 when every run completed, 3 when a gate rejected a model, 1 when a run failed,
    2 for a bad message or setup.
    """
    import asyncio

    from deployments.ci import CiContext, check_targets, parse_targets, trigger

    try:
        settings = _settings()
        ctx = CiContext.from_env(os.environ)
        targets = parse_targets(ctx.commit_message)
        if targets is None:
            typer.echo("commit message does not start with 'train <model>': nothing to start")
            return
        from tasks.core.config import list_configs

        known = {p.stem for p, _ in list_configs(settings.config_dir)}
        models = check_targets(targets, known, Path(os.environ.get("CI_PROJECT_DIR") or "."))
        _need_server("mlops ci")
        ui = os.environ["PREFECT_API_URL"].removesuffix("/api")
        code = asyncio.run(trigger(ctx, models, typer.echo, ui, timeout))
    except (MlopsError, OSError) as exc:
        raise fail(exc) from None
    raise typer.Exit(code)


def _run_one_flow(run):
    """Run one flow on the user's Prefect server or a temporary one; bad input is one line."""
    server = start_if_needed()
    if server is not None:
        typer.echo(f"started a temporary Prefect server at {server.api_url} "
                   "(set PREFECT_API_URL to use your own)")
        server.wait_ready(float(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]))
    try:
        return run()
    except Exception as exc:  # every failure is one line and an exit code
        raise fail(exc) from None


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
) -> None:
    """Score a batch with the model's champion (@champion), after checking its artifact against
    the registered SHA-256. Reads in Arrow batches, so memory stays flat however large the input."""
    from flows.scoring import batch_scoring

    when = _checked(model, day)
    summary = _run_one_flow(lambda: batch_scoring(model, input_, output, when, keep or None))
    typer.echo(f"{summary.model} v{summary.version}: {summary.rows:,} rows scored in "
               f"{summary.seconds:.1f} s ({summary.rows_per_s:,.0f} rows/s) -> {summary.output}")
    if summary.ignored:
        typer.echo(f"ignored input columns: {', '.join(summary.ignored)}")
    typer.echo("  ".join(f"{k}: {v:.4g}" for k, v in summary.distribution.items()))


@app.command()
def monitor(
    model: Annotated[str, typer.Argument(help="Model name (or YAML path).")],
    input_: Annotated[str, typer.Option(
        "--input", help="Recent scoring inputs: .parquet, .csv, or snowflake:<query> (with the "
                        "label column, the primary metric is checked too).")],
    day: DayOption = None,
) -> None:
    """Compare a batch with the champion's training profile: PSI per feature and for the
    predictions. Exit 0 no drift, 4 drift (a report goes to MLflow and, with a Prefect server,
    the drift event starts a retrain), 2 bad input or too few rows for a verdict."""
    from flows.monitoring import monitoring

    when = _checked(model, day)
    report = _run_one_flow(lambda: monitoring(model, input_, when))
    if report.columns:
        _print_table(("column", "PSI", "status"), [
            (c.name, f"{c.psi:.4f}", c.status.upper() if c.status == "drift" else c.status)
            for c in sorted(report.columns, key=lambda c: -c.psi)])
    if report.metric:
        typer.echo(f"\nlabelled {report.metric}: {report.metric_current:.4f} "
                   f"(at registration {report.metric_reference:.4f})")
    typer.echo(f"\n{report.model} v{report.version}: {report.verdict.upper()}: {report.message}")
    typer.echo(f"report: {report.mlflow_run}")
    raise typer.Exit(report.exit_code())


def _checked(model: str, day: str | None):
    """The model's config is valid and --day is a date (or None), before any server starts."""
    from datetime import date

    try:
        _model(model)
        return None if day is None else date.fromisoformat(day)
    except MlopsError as exc:
        raise fail(exc) from None
    except ValueError:
        raise fail(ConfigError(f"--day must be a date like 2026-11-22, got {day!r}")) from None


pools_app = typer.Typer(help="Work pools mapped to GitLab runners (deployments/pools.yaml).",
                        no_args_is_help=True)
app.add_typer(pools_app, name="pools")
PoolTypeOption = Annotated[str, typer.Option(
    "--type", help="process (shell runners, or a worker inside the training image) or docker "
                   "(Docker hosts).")]


def _pool_type(value: str) -> str:
    if value not in ("process", "docker"):
        raise fail(ConfigError(f"--type must be process or docker, got {value!r}"))
    return value


@pools_app.command("apply")
def pools_apply(pool_type: PoolTypeOption = "process") -> None:
    """Create or update cpu-runners and gpu-runners on the Prefect server (idempotent)."""
    import asyncio

    from deployments.pools import apply_pools, load_pools

    kind = _pool_type(pool_type)
    _need_server("mlops pools apply")
    try:
        specs = load_pools()
        results = asyncio.run(apply_pools(specs, kind))
    except MlopsError as exc:
        raise fail(exc) from None
    for name, action in results:
        spec = specs[name]
        typer.echo(f"{name} ({kind}, {spec.device}, runners tagged {', '.join(spec.runner_tags)}): "
                   f"{action}")


@pools_app.command("show")
def pools_show(
    name: Annotated[str, typer.Argument(help="Pool name from deployments/pools.yaml.")],
    pool_type: PoolTypeOption = "process",
) -> None:
    """Print a pool's base job template (usable with `prefect work-pool create --base-job-template`)."""
    from deployments.pools import base_job_template, load_pools, render

    kind = _pool_type(pool_type)
    try:
        specs = load_pools()
        if name not in specs:
            raise ConfigError(f"no pool {name!r} in deployments/pools.yaml (known: {', '.join(specs)})")
        typer.echo(render(base_job_template(specs[name], kind)), nl=False)
    except MlopsError as exc:
        raise fail(exc) from None


schedules_app = typer.Typer(help="Without a command: every deployment's schedule and next run. "
                                 "migrate-from-gitlab moves GitLab pipeline schedules to Prefect.",
                            invoke_without_command=True)
app.add_typer(schedules_app, name="schedules")


@schedules_app.callback()
def schedules(
    ctx: typer.Context,
    prefect_file: Annotated[Path, typer.Option(
        help="Read schedules from this file when PREFECT_API_URL is not set.")] = Path("prefect.yaml"),
) -> None:
    """List every deployment's schedule and next run (from the server when PREFECT_API_URL is set,
    else from prefect.yaml)."""
    import asyncio

    if ctx.invoked_subcommand:
        return

    from deployments.schedules import from_manifest, from_server

    try:
        if os.environ.get("PREFECT_API_URL"):
            rows, where = asyncio.run(from_server()), os.environ["PREFECT_API_URL"]
        else:
            rows, where = from_manifest(prefect_file), f"{prefect_file} (no PREFECT_API_URL)"
    except MlopsError as exc:
        raise fail(exc) from None
    typer.echo(f"schedules on {where}")
    _print_table(("deployment", "slug", "cron", "timezone", "active", "next run"), [
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
    becomes as_of. A cron Prefect cannot take is reported and never applied."""
    import asyncio

    from deployments.gitlab_schedules import apply, plan, yaml_entries
    from tasks.adapters.gitlab import open_gitlab, skipped
    from tasks.core.config import list_configs

    try:
        gitlab = open_gitlab()
        if gitlab is None:
            raise ConfigError(skipped("schedule migration").replace(" skipped", " unavailable"))
        models = [p.stem for p, _ in list_configs(_settings().config_dir)]
        found = gitlab.pipeline_schedules()
        if found is None:
            raise MlopsError("could not read the GitLab pipeline schedules (see the warning above)")
        migrations = plan(found, models)
    except MlopsError as exc:
        raise fail(exc) from None
    if not migrations:
        typer.echo("no pipeline schedules in this GitLab project")
        return
    _print_table(("gitlab id", "description", "cron", "timezone", "→ Prefect", "parameters"), [
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
        _need_server("mlops schedules migrate-from-gitlab --apply")
        for line in asyncio.run(apply(migrations, gitlab)):
            typer.echo(line)
    if any(m.problem and m.active for m in migrations):
        raise typer.Exit(2)


@app.command()
def generate(
    rows: Annotated[int, typer.Option(help="Number of claims to generate.", min=1)],
    output: Annotated[Path, typer.Option(help="Output file: .csv or .parquet.")],
    drift: Annotated[float, typer.Option(help="Distribution shift (0 = reference).", min=0)] = 0.0,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same rows).")] = 7,
) -> None:
    """Write deterministic synthetic claims with the fraud, damage and settlement targets."""
    from tasks.data import generate_claims, write_frame

    try:
        write_frame(generate_claims(rows, seed=seed, drift=drift), output)
    except MlopsError as exc:
        raise fail(exc) from None
    typer.echo(f"wrote {rows} claims to {output} (seed {seed}, drift {drift})")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
