"""`mlops history | audit verify | audit repair | audit realign`: the trail that proves every
production decision, and the key holder's repairs of it."""

from __future__ import annotations

from typing import Annotated

import typer

from mlops.app import JsonOption, app, print_json, print_table, settings, typer_app
from mlops.release import AsOption, _named, identity_for
from tasks.core.errors import ExitCode


def _trail(model: str, read_only: bool = False):
    from mlops.reads import read_registry
    from tasks.adapters.audit_trail import AuditTrail
    from tasks.adapters.registries import open_registry

    found, cfg = _named(model)
    registry = read_registry(found) if read_only else open_registry(found)
    return registry, cfg, AuditTrail(registry, cfg.name, settings=found,
                                      key=found.resolve_audit_key())


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

    registry, cfg, trail = _trail(model, read_only=True)
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
    registry, cfg, trail = _trail(model, read_only=True)
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
    from tasks.core.runtime import Runtime
    from tasks.release.production import realign

    found, cfg = _named(model)
    runtime = Runtime(found)
    who = identity_for(cfg, as_, runtime)
    moved = realign(open_registry(found), cfg, who, comment, settings=found,
                    policy=runtime.policy, key=runtime.audit_key)
    typer.echo("\n".join(moved) if moved else f"{cfg.name}: aliases are where the trail says")
