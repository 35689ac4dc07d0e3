"""`mlops train` and `mlops run`: the training pipeline (and deploy) for models and notebooks."""

from __future__ import annotations

from typing import Annotated

import typer

from mlops.app import EXIT_CODES, app, fail, flow_heartbeats, print_table, run_flow, settings
from mlops.local_server import LocalServer, start_if_needed
from tasks.core.redact import redact


@app.command(epilog=EXIT_CODES)
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
    what it logged in an MLflow run of experiment notebooks/<name>. The first failure's code
    is the exit code.
    """
    from tasks.core.config import load_config

    notebooks = [m for m in models if m.endswith(".ipynb")]
    if notebooks:
        _train_notebooks(notebooks)
        models = [m for m in models if m not in notebooks]
        if not models:
            return
    found = settings()
    configs = {model: load_config(model, found.config_dir) for model in models}  # all, up front
    check_policy(found, list(configs.values()))
    # the temporary Prefect server boots (~8 s) while the up-to-date check runs
    server = start_if_needed()
    rows: list[tuple[str, ...]] = []
    todo = models if force else _stale(configs, rows)
    first_code = _run_flows(todo, rows, server) if todo else 0
    if server is not None and not todo:
        server.stop()
    print_table(("model", "version", "metric", "value", "gate"), rows)
    if first_code:
        raise typer.Exit(first_code)


def check_policy(found, configs: list) -> None:
    """Every model against the organisation policy before anything starts (exit 2 naming the
    tag); the training flow checks again, so a worker's run cannot skip it."""
    from tasks.core.policy_config import load_policy, require_compliant_config

    loaded = load_policy(found.policy_path)
    for cfg in configs:
        require_compliant_config(loaded, cfg.name, cfg.registry)


def _stale(configs: dict, rows: list[tuple[str, ...]]) -> list[str]:
    """The models to train; the up-to-date ones are reported in rows. The registry is read as
    the read-only commands read it: over REST where a tracking server serves the store, so an
    up-to-date re-run imports no MLflow."""
    from mlops.reads import read_registry
    from tasks.reports.format import fmt_any
    from tasks.training.fingerprint import up_to_date

    found = settings()
    registry = read_registry(found)  # MLflow's client where the server wants its credentials
    todo = []
    for model, cfg in configs.items():
        ref = up_to_date(cfg, found, registry)
        if ref is None:
            todo.append(model)
            continue
        typer.echo(f"{cfg.name}: up to date (v{ref.version} was trained on the same data, "
                   "config and code)")
        rows.append((cfg.name, ref.version, ref.tags.get("gate_metric", ""),
                     fmt_any(ref.tags.get("gate_value")), "passed (up to date)"))
    return todo


def _train_notebooks(notebooks: list[str]) -> None:
    from flows.notebook import notebook_training
    from tasks.reports.format import fmt
    from tasks.training.notebook import check_notebook

    for notebook in notebooks:
        check_notebook(notebook)
    for notebook in notebooks:
        result = run_flow(lambda nb=notebook: notebook_training(nb))
        shown = ", ".join(f"{k} {fmt(v)}" for k, v in sorted(result.metrics.items()))
        typer.echo(f"{notebook}: executed in {result.seconds:.0f} s; {shown or 'no metrics'}; "
                   f"MLflow {result.run_url}")


def _run_flows(models: list[str], rows: list[tuple[str, ...]], server: LocalServer | None,
               **deploy: object) -> int:
    """Each model in turn; every model gets a summary row, the first failure's code is kept."""
    from tasks.reports.progress import PLAN

    if server is not None:
        typer.echo(f"started a temporary Prefect server at {server.api_url} "
                   "(set PREFECT_API_URL to use your own)")
        server.wait_ready(settings().server_startup_s)
    first_code = 0
    names, plan = _plan(models)
    token = PLAN.set(plan)  # the training task reads it: an ETA for the whole run
    try:
        with flow_heartbeats():
            for model, name in zip(models, names, strict=True):
                code = _run_one(model, rows, deploy)
                first_code = first_code or code
                plan.finish(name)  # trained, cached or failed: nothing left to tune for it
    finally:
        PLAN.reset(token)
    return first_code


def _plan(models: list[str]):
    """The models' config names and trial budgets, said up front when there are several."""
    from tasks.core.config import load_config
    from tasks.reports.progress import RunPlan

    names = [load_config(model, settings().config_dir) for model in models]
    trials = {cfg.name: cfg.training.n_trials for cfg in names}
    if len(trials) > 1:
        typer.echo(f"tuning {sum(trials.values())} trials over {len(trials)} models in turn ("
                   + ", ".join(f"{name} {n}" for name, n in trials.items())
                   + "); each trial's line says the time left for its model and the whole run")
    return [cfg.name for cfg in names], RunPlan(trials)


def _run_one(model: str, rows: list[tuple[str, ...]], deploy: dict) -> int:
    """One model's pipeline and its summary row; its exit code (0 when it succeeded)."""
    from flows.training import training_pipeline
    from tasks.reports.format import fmt

    try:
        result = training_pipeline(model, **deploy)
    except Exception as exc:  # summarise every model, then exit with the first code
        why = redact(str(exc).splitlines()[0]) if str(exc) else "failed"
        rows.append((model, "-", "-", "-", why) + (("-",) if deploy else ()))
        return fail(exc).exit_code
    note = " (reused)" if result.reused else ""
    row: tuple[str, ...] = (result.model, result.version, result.metric, fmt(result.value),
                            result.gate + note)
    if result.deployment is not None:
        row += (result.deployment.production,)
        typer.echo(result.deployment.message)
    rows.append(row)
    return 0


@app.command(epilog=EXIT_CODES)
def run(
    models: Annotated[list[str], typer.Argument(
        help="Model names under configs/models (or YAML paths); several run in turn.")],
    approve_as: Annotated[str | None, typer.Option(
        "--as", help="Approve production up front as this person: checked like "
        "any approval (approvers, four eyes; with identity gitlab MLOPS_APPROVER_TOKEN must "
        "belong to them). Only this command can approve up front: a deployment run cannot.")
    ] = None,
    comment: Annotated[str, typer.Option(help="Comment kept with the approval.")] = "",
    old_as: Annotated[str | None, typer.Option("--approve-as", hidden=True)] = None,
) -> None:
    """Run the whole pipeline: validate → train → evaluate → gate → register → deploy.

    Deploy moves the staging alias, serves the version and smoke-tests it, then promotes it to
    production. With your own Prefect server (PREFECT_API_URL) the run pauses for approval in
    the UI or `mlops approve`; without one, approve up front with --as or the run stops
    after staging and says how to continue (`mlops promote`). With the local stack up
    (`mlops server start`) the run pauses there and prints the link.
    The first failure's code is the exit code.
    """
    from mlops.release import identity_for
    from tasks.contracts.release import Approval
    from tasks.core.config import load_config
    from tasks.core.runtime import Runtime

    found = settings()
    configs = [load_config(model, found.config_dir) for model in models]
    check_policy(found, configs)
    approve_as = approve_as or old_as  # --approve-as: the old spelling
    up_front = None
    if approve_as:  # checked as a person now; each model's policy applies again at promotion
        who = identity_for(configs[0], approve_as, Runtime(found))
        up_front = Approval(approver=who, approved=True, comment=comment or "approved up front")
        typer.echo(f"production approval given up front by {who.label()}")
    # only a server of the user's outlives this command, so only there can a pause be answered
    users_server = bool(found.prefect_api_url)
    # before anything imports Prefect (the approval stage does): otherwise Prefect starts its
    # own temporary server later, after every import, instead of alongside them
    server = start_if_needed()
    from tasks.release.approval import UP_FRONT

    rows: list[tuple[str, ...]] = []
    token = UP_FRONT.set(up_front)
    try:
        code = _run_flows(models, rows, server, deploy=True, comment=comment,
                          wait_for_approval=users_server)
    finally:
        UP_FRONT.reset(token)
    print_table(("model", "version", "metric", "value", "gate", "production"), rows)
    if code:
        raise typer.Exit(code)
