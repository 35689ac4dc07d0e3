"""`mlops approve | promote | rollback`: production decisions (the trail that proves them is
`mlops/audit.py`). Models are named (their policy is configs/models/<model>.yaml)."""

from __future__ import annotations

from typing import Annotated

import typer

from mlops.app import app, settings

# a model version is the argument after the model everywhere (`mlops promote fraud 3`);
# `--version` is only the tool's own version (`mlops --version`)
OldVersion = Annotated[str | None, typer.Option("--version", hidden=True)]
AsOption = Annotated[str | None, typer.Option(
    "--as", help="Who decides. With identity gitlab it must match MLOPS_APPROVER_TOKEN's user "
                 "(or be left out); with identity declared it is recorded as typed.")]


def _named(model: str):
    from tasks.core.config import load_named_config

    found = settings()
    return found, load_named_config(model, found.config_dir)


def identity_for(cfg, typed: str | None, runtime):
    """The person deciding: proven by MLOPS_APPROVER_TOKEN (GET /user) when the model asks for
    a GitLab identity or a token is set; else the name typed with --as (declared). The command's
    runtime says which token, GitLab and policy."""
    from tasks.adapters.gitlab_identity import whoami
    from tasks.contracts.release import Identity
    from tasks.core.errors import ApprovalError, ConfigError
    from tasks.core.policy_config import governance

    found = runtime.settings
    rule = governance(runtime.policy, cfg)
    if rule.identity == "gitlab" or found.approver_token:
        if not found.approver_token:
            raise ApprovalError(f"{cfg.name} needs a verified approver: set MLOPS_APPROVER_TOKEN "
                                "to your own GitLab token (api scope)")
        if found.gitlab is None:
            raise ConfigError("a GitLab identity needs CI_SERVER_URL and CI_PROJECT_ID")
        user = whoami(found.gitlab, found.approver_token)
        if typed and typed != user["username"]:
            raise ApprovalError(f"--as {typed} but MLOPS_APPROVER_TOKEN belongs to "
                                f"{user['username']}: refused")
        return Identity(username=user["username"], user_id=user["id"], name=user["name"],
                        verified=True, via="gitlab-token")
    if not typed:
        if rule.identity == "declared":
            raise ApprovalError(f"say who decides with --as NAME ({cfg.name}'s identity is "
                                "declared: the name is recorded as typed)")
        raise ApprovalError(f"say who decides with --as NAME (recorded as declared, unverified) "
                            f"or MLOPS_APPROVER_TOKEN (verified); {cfg.name}'s production "
                            f"approvals come from identity {rule.identity}")
    return Identity(username=typed)


@app.command()
def approve(
    target: Annotated[str, typer.Argument(
        help="The model whose deploy run waits (or that run's flow run id).")],
    as_: AsOption = None,
    reject_: Annotated[bool, typer.Option("--reject", help="Reject instead of approving.")] = False,
    comment: Annotated[str, typer.Option(help="Why (required with --reject); kept in the audit "
                                              "trail.")] = "",
) -> None:
    """Answer the deploy run waiting for a model's production approval (needs PREFECT_API_URL).
    Several waiting runs of one model: name the run by its id. With identity gitlab-environment
    the decision is made in GitLab: this only wakes the run to read it. Exit codes: 0 answered,
    1 Prefect refused, 2 nothing waiting, several waiting, or an approver who may not decide."""
    from deployments.approval import answer, find, wake
    from tasks.adapters.audit_trail import AuditTrail
    from tasks.adapters.registries import open_registry
    from tasks.core.config import load_named_config
    from tasks.core.errors import ApprovalError
    from tasks.core.policy_config import governance
    from tasks.core.runtime import Runtime
    from tasks.release.guard import sealed_facts
    from tasks.release.policy import refusal

    runtime = Runtime(settings())  # one policy and one key for the whole command
    found = runtime.settings
    run = find(found, target)
    cfg = load_named_config(run.model, found.config_dir)
    rule = governance(runtime.policy, cfg)
    if rule.identity == "gitlab-environment":
        if as_ or reject_:
            raise ApprovalError(f"{cfg.name} is approved or rejected in GitLab (identity "
                                "gitlab-environment), on the production deployment of its deploy "
                                "run; `mlops approve` without --as or --reject wakes the run")
        typer.echo(wake(found, run))
        return
    who = identity_for(cfg, as_, runtime)
    registry = open_registry(found)
    tags = registry.require_version(cfg.name, run.version).tags
    events = AuditTrail(registry, cfg.name, settings=found, key=runtime.audit_key).events()
    facts, unusable = sealed_facts(cfg.name, run.version, tags, events)
    reason = (unusable or refusal(rule, who, facts)) if not reject_ else refusal(rule, who, None)
    if reason:
        raise ApprovalError(f"{reason} (the run keeps waiting)")
    typer.echo(answer(found, run, cfg, who, not reject_, comment, tags.get("git_commit", "")))


@app.command()
def promote(
    model: Annotated[str, typer.Argument(help="Model name (its policy: configs/models).")],
    version: Annotated[str | None, typer.Argument(
        help="The staged version to promote.", show_default=False)] = None,
    as_: AsOption = None,
    comment: Annotated[str, typer.Option(help="Comment kept in the audit trail.")] = "",
    old_version: OldVersion = None,
) -> None:
    """Approve and promote a staged version to production: the approver's right to decide (four
    eyes included), a passed staging of this version, freeze windows and post-deploy checks apply;
    a failed check rolls back automatically. Exit codes: 0 promoted, 1 refused by a freeze window
    or rolled back, 2 bad input or an approver who may not decide."""
    from tasks.adapters.registries import open_registry
    from tasks.core.errors import ConfigError
    from tasks.core.runtime import Runtime
    from tasks.release.production import promote as promote_version

    version = version or old_version
    if not version:
        raise ConfigError(f"say which version to promote: mlops promote {model} VERSION")
    found, cfg = _named(model)
    runtime = Runtime(found)
    who = identity_for(cfg, as_, runtime)
    previous = promote_version(open_registry(found), cfg, version, who, comment,
                               signed=runtime.signed)
    typer.echo(f"{cfg.name}@{cfg.deploy.production.alias}: v{previous or '-'} -> v{version} "
               f"(approved by {who.label()})")


@app.command()
def rollback(
    model: Annotated[str, typer.Argument(help="Model name (its policy: configs/models).")],
    version: Annotated[str | None, typer.Argument(
        help="A former champion to go back to (default: the one before the current).",
        show_default=False)] = None,
    as_: AsOption = None,
    comment: Annotated[str, typer.Option(help="Why (audit trail).")] = "",
    to: Annotated[str | None, typer.Option("--to", hidden=True)] = None,
    old_version: OldVersion = None,
) -> None:
    """Move the champion back to a version that was champion before (read from the signed
    trail), with post-deploy checks, outside freeze windows; production is never left without
    a champion. Exit codes: 0 rolled back, 1 refused or nothing to roll back to (the first
    champion included), 2 bad input, a person who may not decide, or an alias moved outside
    the pipeline."""
    from tasks.adapters.registries import open_registry
    from tasks.core.runtime import Runtime
    from tasks.release.production import rollback as rollback_champion

    found, cfg = _named(model)
    runtime = Runtime(found)
    who = identity_for(cfg, as_, runtime)
    current, target = rollback_champion(open_registry(found), cfg, who,
                                        version or old_version or to, comment, settings=found,
                                        policy=runtime.policy, key=runtime.audit_key)
    typer.echo(f"{cfg.name}@{cfg.deploy.production.alias}: v{current} -> v{target}")
