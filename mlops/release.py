"""`mlops promote | approve | rollback | history`: production decisions by hand, and the trail."""

from __future__ import annotations

from typing import Annotated

import typer

from mlops.app import app, model_config, print_table, settings


@app.command()
def promote(
    model: Annotated[str, typer.Argument(help="Model name (or YAML path).")],
    version: Annotated[str, typer.Option(help="Registered version to promote.")],
    as_: Annotated[str, typer.Option("--as", help="Approver's name.")],
    comment: Annotated[str, typer.Option(help="Comment kept in the audit trail.")] = "",
) -> None:
    """Approve and promote a staged version to production (freeze windows and post-deploy
    checks apply; a failed check rolls back automatically).
    Exit codes: 0 promoted, 1 refused or rolled back, 2 bad input or unlisted approver."""
    from tasks.adapters.registries import open_registry
    from tasks.release.approval import check_approver
    from tasks.release.promotion import promote as promote_version

    found, cfg = model_config(model)
    check_approver(cfg, as_)
    previous = promote_version(open_registry(found), cfg, version, as_, comment)
    typer.echo(f"{cfg.name}@{cfg.deploy.production.alias}: v{previous or '-'} -> v{version} "
               f"(approved by {as_})")


@app.command()
def approve(
    flow_run_id: Annotated[str, typer.Argument(help="The paused flow run (from the log or UI).")],
    as_: Annotated[str, typer.Option("--as", help="Approver's name.")],
    reject_: Annotated[bool, typer.Option("--reject", help="Reject instead of approving.")] = False,
    comment: Annotated[str, typer.Option(help="Comment kept in the audit trail.")] = "",
) -> None:
    """Answer a flow run paused for production approval (needs PREFECT_API_URL).
    Exit codes: 0 answered, 1 Prefect refused, 2 not a paused deploy run or unlisted approver."""
    from deployments.approval import answer_paused_run

    typer.echo(answer_paused_run(flow_run_id, as_, not reject_, comment, settings()))


@app.command()
def rollback(
    model: Annotated[str, typer.Argument(help="Model name (or YAML path).")],
    to: Annotated[str | None, typer.Option(
        help="Version to go back to (default: the champion before the current one).")] = None,
    as_: Annotated[str, typer.Option("--as", help="Who rolls back (audit trail).")] = "operator",
    comment: Annotated[str, typer.Option(help="Why (audit trail).")] = "",
) -> None:
    """Move the champion alias back by hand.
    Exit codes: 0 rolled back, 1 nothing to roll back to, 2 bad input."""
    from tasks.adapters.registries import open_registry
    from tasks.release.rollback import rollback as rollback_champion

    found, cfg = model_config(model)
    current, target = rollback_champion(open_registry(found), cfg, as_, to, comment)
    after = f"v{target}" if target else "none (the first champion was rolled back)"
    typer.echo(f"{cfg.name}@{cfg.deploy.production.alias}: v{current} -> {after}")


@app.command()
def history(
    model: Annotated[str, typer.Argument(help="Model name (or YAML path).")],
) -> None:
    """Print the audit trail: every staging, promotion, rejection and rollback."""
    from tasks.adapters.registries import open_registry

    found, cfg = model_config(model)
    events = open_registry(found).events(cfg.name)
    if not events:
        typer.echo(f"no deployment history for {cfg.name}")
        return
    rows = [(e.get("at", "")[:19].replace("T", " "), e.get("action", ""),
             e.get("environment", ""), f"{e.get('from_version') or '-'} -> "
             f"{e.get('to_version') or '-'}", e.get("actor", ""),
             (e.get("comment") or e.get("reason") or "")[:60], e.get("flow_run_id", "")[:8])
            for e in events]
    print_table(("when (UTC)", "action", "env", "version", "who", "comment / reason",
                 "flow run"), rows)
