"""`mlops approve | promote | rollback | history | audit verify`: production decisions and the
trail that proves them. Models are named (their policy is configs/models/<model>.yaml)."""

from __future__ import annotations

from typing import Annotated

import typer

from mlops.app import JsonOption, app, print_json, print_table, settings, typer_app
from tasks.core.errors import ExitCode

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


def identity_for(cfg, typed: str | None):
    """The person deciding: proven by MLOPS_APPROVER_TOKEN (GET /user) when the model asks for
    a GitLab identity or a token is set; else the name typed with --as (declared)."""
    from tasks.adapters.gitlab_identity import whoami
    from tasks.contracts.release import Identity
    from tasks.core.errors import ApprovalError, ConfigError
    from tasks.core.policy_config import governance, load_policy

    found = settings()
    rule = governance(load_policy(found.policy_path), cfg)
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
    from tasks.adapters.registries import open_registry
    from tasks.core.errors import ApprovalError
    from tasks.core.policy_config import governance, load_policy
    from tasks.release.audit import AuditTrail
    from tasks.release.guard import sealed_facts
    from tasks.release.policy import refusal

    found = settings()
    run = find(found, target)
    _, cfg = _named(run.model)
    if governance(load_policy(found.policy_path), cfg).identity == "gitlab-environment":
        if as_ or reject_:
            raise ApprovalError(f"{cfg.name} is approved or rejected in GitLab (identity "
                                "gitlab-environment), on the production deployment of its deploy "
                                "run; `mlops approve` without --as or --reject wakes the run")
        typer.echo(wake(found, run))
        return
    who = identity_for(cfg, as_)
    registry = open_registry(found)
    tags = registry.require_version(cfg.name, run.version).tags
    events = AuditTrail(registry, cfg.name, key=found.resolve_audit_key()).events()
    facts, unusable = sealed_facts(cfg.name, run.version, tags, events)
    rule = governance(load_policy(found.policy_path), cfg)
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
    from tasks.release.production import promote as promote_version

    version = version or old_version
    if not version:
        raise ConfigError(f"say which version to promote: mlops promote {model} VERSION")
    found, cfg = _named(model)
    who = identity_for(cfg, as_)
    previous = promote_version(open_registry(found), cfg, version, who, comment)
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
    from tasks.release.production import rollback as rollback_champion

    found, cfg = _named(model)
    who = identity_for(cfg, as_)
    current, target = rollback_champion(open_registry(found), cfg, who,
                                        version or old_version or to, comment)
    typer.echo(f"{cfg.name}@{cfg.deploy.production.alias}: v{current} -> v{target}")


def _trail(model: str):
    from tasks.adapters.registries import open_registry
    from tasks.release.audit import AuditTrail

    found, cfg = _named(model)
    registry = open_registry(found)
    return registry, cfg, AuditTrail(registry, cfg.name, key=found.resolve_audit_key())


@app.command()
def history(
    model: Annotated[str, typer.Argument(help="Model name.")],
    as_json: JsonOption = False,
) -> None:
    """Print the audit trail in chain order: every staging, approval, promotion, refusal and
    rollback, who decided and whether that identity was verified. A broken chain is shown first.
    Exit codes: 0 shown (a broken chain is shown, not an error: see `mlops audit verify`),
    2 an unknown model."""
    from tasks.core.chain import legacy, ref

    registry, cfg, trail = _trail(model)
    problems = trail.problems()
    if problems:
        typer.echo(f"!! AUDIT TRAIL OF {cfg.name.upper()} IS NOT INTACT ({len(problems)} "
                   f"problem(s)): {problems[0]} — run `mlops audit verify {cfg.name}`", err=True)
    records = trail.records()
    voided = trail.voided()
    if as_json:
        print_json({"model": cfg.name, "intact": not problems, "problems": problems,
                    "records": [{**r, "unsealed": legacy(r), "voided_by": voided.get(ref(r))}
                                for r in records]})
        return
    if not records:
        typer.echo(f"no deployment history for {cfg.name}")
        return
    print_table(("#", "when (UTC)", "action", "version", "who", "comment / reason"), [
        (r.get("seq", "?"), r.get("at", "")[:19].replace("T", " "), r.get("action", ""),
         f"{r.get('from_version') or '-'} -> {r.get('to_version') or '-'}",
         r.get("identity") or r.get("actor", ""),
         _why(r) + ("  [DELETED]" if r.get("deleted") else "")
         + ("  [UNSEALED: counts for nothing]" if legacy(r) else "")
         + (f"  [VOIDED by {voided[ref(r)]}]" if ref(r) in voided else "")) for r in records])


def _why(record: dict[str, str]) -> str:
    """The reason (a refusal's rule) and the person's comment; an intent also names the policy
    and config it was judged by."""
    reason, comment = record.get("reason") or "", record.get("comment") or ""
    text = f"{reason} (comment: {comment})" if reason and comment else reason or comment
    if record.get("policy_sha256"):
        text += (f" [policy {record['policy_sha256'][:12]}, config "
                 f"{record.get('config_sha256', '?')[:12]}]")
    return text.strip()


audit_app = typer_app("The audit trail's integrity.")
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(
    model: Annotated[str, typer.Argument(help="Model name.")],
    as_json: JsonOption = False,
) -> None:
    """Walk the model's audit chain (every record present, unaltered, in order, of this model,
    signed with MLOPS_AUDIT_KEY or a retired key), compare its end with the anchor (truncated,
    replaced by another copy) and the live aliases with the last records. Without the key the
    signatures cannot be checked: UNVERIFIABLE. Exit codes: 0 intact, 1 a problem (each one
    named) or unverifiable, 2 bad input."""
    registry, cfg, trail = _trail(model)
    aliases = {a: registry.alias_version(cfg.name, a)
               for a in (cfg.deploy.production.alias, cfg.deploy.staging.alias)}
    problems = trail.problems(aliases)
    if as_json:
        _verify_json(cfg.name, trail, problems, aliases)
    for problem in problems:
        typer.echo(f"FAIL: {problem}", err=True)
    if trail.key is None:
        typer.echo(f"UNVERIFIABLE: {cfg.name}'s audit records cannot be verified without "
                   "MLOPS_AUDIT_KEY (or MLOPS_AUDIT_KEY_BLOCK): a forged record would pass; "
                   "nothing is called intact", err=True)
    if problems or trail.key is None:
        raise typer.Exit(ExitCode.FAILED)
    records = trail.records()
    old = sum(1 for r in records if r.get("hmac") and not r.get("kid"))
    heads = [f"record {h['seq']} in the {where}" for where, h in trail.anchor_heads().items() if h]
    typer.echo(f"{cfg.name}: {len(records)} record(s) intact, signed (key {trail.key.kid}"
               + (f"; {old} from before key ids, verified with the key itself" if old else "")
               + (f"; {len(trail.voided())} voided by a tombstone" if trail.voided() else "")
               + "), " + (f"anchored at {', '.join(heads)}" if heads else "not anchored yet")
               + "; " + ", ".join(f"@{a} v{v or '-'}" for a, v in aliases.items())
               + " as recorded")
    judged = [r for r in records if r.get("policy_sha256")]
    if judged:  # what the newest production change was judged by
        typer.echo(f"newest production change (record {judged[-1]['seq']}) judged by policy "
                   f"sha256 {judged[-1]['policy_sha256'][:12]}, model config sha256 "
                   f"{judged[-1].get('config_sha256', '?')[:12]}")


def _verify_json(model: str, trail, problems: list[str], aliases: dict) -> None:
    """`mlops audit verify --json`: the verdict and what it rests on; exit codes as for text."""
    records = trail.records() if not problems and trail.key else []
    judged = [r for r in records if r.get("policy_sha256")]
    verdict = "unverifiable" if trail.key is None else ("broken" if problems else "intact")
    print_json({
        "model": model, "verdict": verdict, "problems": problems,
        "records": len(records), "key_id": trail.key.kid if trail.key else None,
        "voided": len(trail.voided()) if records else 0,
        "anchored_at": {where: h["seq"] for where, h in trail.anchor_heads().items() if h}
        if records else {},
        "aliases": aliases,
        "judged_by": {"record": judged[-1]["seq"], "policy_sha256": judged[-1]["policy_sha256"],
                      "config_sha256": judged[-1].get("config_sha256")} if judged else None})
    raise typer.Exit(ExitCode.DONE if verdict == "intact" else ExitCode.FAILED)


@audit_app.command("repair")
def audit_repair(
    model: Annotated[str, typer.Argument(help="Model name.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the tombstone).")],
    as_: Annotated[str | None, typer.Option(
        "--as", help="Who repairs (default: the local user); recorded as typed.")] = None,
) -> None:
    """Write a signed tombstone that voids the records which cannot stand (forged, altered,
    unsigned, another model's) and declares lost ones (removed, or cut off below the anchor),
    so the chain verifies again. Nothing is deleted; needs MLOPS_AUDIT_KEY. Exit codes: 0
    written, 1 nothing to repair or not repairable by a tombstone, 2 bad input or no key."""
    _, cfg, trail = _trail(model)
    stone = trail.repair(reason, as_ or settings().user or "unknown")
    voids = stone.get("voids", "").replace(",", ", ") or "none"
    typer.echo(f"{cfg.name}: tombstone record {stone['seq']} voids {voids}; lost: "
               f"{stone.get('lost') or 'none'}. Check with `mlops audit verify {cfg.name}`.")


@audit_app.command("realign")
def audit_realign(
    model: Annotated[str, typer.Argument(help="Model name.")],
    as_: AsOption = None,
    comment: Annotated[str, typer.Option(help="Why (audit trail).")] = "",
) -> None:
    """Put the champion and staging aliases back where the signed trail says, after someone
    moved them outside the pipeline (scoring, monitoring and promotions refuse until then).
    Needs MLOPS_AUDIT_KEY and a person allowed to decide. Exit codes: 0 done or nothing to do,
    1 the trail is not intact, 2 bad input or a person who may not decide."""
    from tasks.adapters.registries import open_registry
    from tasks.release.production import realign

    found, cfg = _named(model)
    who = identity_for(cfg, as_)
    moved = realign(open_registry(found), cfg, who, comment)
    typer.echo("\n".join(moved) if moved else f"{cfg.name}: aliases are where the trail says")
