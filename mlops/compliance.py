"""`mlops compliance | check-off`: every version against the organisation policy, its compliance
report, and checks recorded from outside (a CI security scan)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mlops.app import JsonOption, app, print_json, print_table, settings
from tasks.core.audit_event import Action
from tasks.core.errors import ExitCode


def _open(model: str):
    from tasks.adapters.audit_trail import AuditTrail
    from tasks.adapters.registries import open_registry
    from tasks.core.config import load_named_config
    from tasks.core.policy_config import load_policy

    found = settings()
    loaded = load_policy(found.policy_path)
    cfg = load_named_config(model, found.config_dir)
    registry = open_registry(found)
    return found, loaded, cfg, registry, AuditTrail(registry, cfg.name, settings=found,
                                                    key=found.resolve_audit_key())


def _cell(problems: list[str]) -> str:
    return "ok" if not problems else f"refused: {problems[0]}"


class CheckResult(StrEnum):
    """What a recorded check found."""

    passed = "passed"
    failed = "failed"


@app.command()
def compliance(
    model: Annotated[str, typer.Argument(help="Model name (configs/models/<model>.yaml).")],
    version: Annotated[str | None, typer.Argument(
        help="Only this version (default: every registered version).", show_default=False)
    ] = None,
    report: Annotated[bool, typer.Option(
        "--report", help="Write each listed version's compliance report now (current policy, "
                         "checks, approvals so far) under MLOPS_HOME/reports/compliance and "
                         "store it in the version's MLflow run.")] = False,
    as_json: JsonOption = False,
    old_version: Annotated[str | None, typer.Option("--version", hidden=True)] = None,
) -> None:
    """Check every registered version of a model against the current policy (configs/policy.yaml,
    MLOPS_POLICY): a policy change never silently re-classifies a version, it is listed here.
    Exit codes: 0 all compliant, 1 a version is non-compliant (each named with the rule),
    2 bad input or a malformed policy."""
    from tasks.core.errors import UnknownVersion
    from tasks.release.compliance import versions_status

    version = version or old_version
    found, loaded, cfg, registry, trail = _open(model)
    events = trail.events()
    aliases = {a: registry.alias_version(cfg.name, a)
               for a in (cfg.deploy.staging.alias, cfg.deploy.production.alias, "challenger")}
    statuses = versions_status(registry, loaded, cfg.name, events, aliases)
    if version is not None:
        statuses = [s for s in statuses if s.version == version]
        if not statuses:
            raise UnknownVersion(f"{cfg.name} has no version {version} in the registry")
    if as_json:
        print_json({"model": cfg.name, "policy": loaded.label, "versions": [
            {"version": s.version, "aliases": list(s.aliases),
             "registered_under": s.registered_under, "policy_changed": s.policy_changed,
             "environments": s.environments, "compliant": s.compliant, "problems": s.problems}
            for s in statuses]})
    else:
        _show(cfg.name, loaded.label, statuses)
    if report:
        _write_reports(found, loaded, cfg, registry, events, statuses)
    if any(not s.compliant for s in statuses):
        raise typer.Exit(ExitCode.FAILED)


def _show(model: str, label: str, statuses: list) -> None:
    typer.echo(f"{model} against {label}")
    if not statuses:
        typer.echo(f"no registered versions of {model}")
        return
    print_table(("version", "aliases", "registered under", "staging", "production", "status"), [
        (s.version, ",".join(s.aliases) or "-",
         (s.registered_under or "-") + (" (policy changed)" if s.policy_changed else ""),
         _cell(s.environments["staging"]), _cell(s.environments["production"]),
         "compliant" if s.compliant else "NON-COMPLIANT") for s in statuses])
    for status in statuses:
        for problem in status.problems:
            typer.echo(f"NON-COMPLIANT v{status.version}: {problem}", err=True)


def _write_reports(found, loaded, cfg, registry, events, statuses: list) -> None:
    from tasks.release.compliance import current_report
    from tasks.reports.compliance import REPORT_NAME

    report_path(found.home, cfg.name, "").parent.mkdir(parents=True, exist_ok=True)
    for status in statuses:
        ref = registry.require_version(cfg.name, status.version)
        html = current_report(registry, loaded, ref, events)
        path = report_path(found.home, cfg.name, status.version)
        path.write_text(html)
        if ref.run_id:
            registry.log_text(ref.run_id, html, REPORT_NAME)
        typer.echo(f"report: {path}", err=True)


@app.command("check-off")
def check_off(
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="The registered version the check was run on.")],
    check: Annotated[str, typer.Argument(help="The check's name as the policy lists it, e.g. "
                                              "security_scan.")],
    result: Annotated[CheckResult, typer.Option(help="What the check found.")],
    as_: Annotated[str | None, typer.Option(
        "--as", help="Who ran or vouches for the check (default: GITLAB_USER_LOGIN in CI).")
                   ] = None,
    evidence: Annotated[str, typer.Option(
        help="Where the evidence is (a CI job URL, a report path); kept in the audit trail.")
                        ] = "",
) -> None:
    """Record a check's result on a version, such as a CI security scan, as an audit record the
    policy's environment checks read. Checks computed at registration cannot be checked off.
    Exit codes: 0 recorded, 2 bad input."""
    import re

    from tasks.adapters.audit_trail import event
    from tasks.core.errors import ConfigError
    from tasks.core.policy_config import COMPUTED_CHECKS

    found, loaded, cfg, registry, trail = _open(model)
    outcome = CheckResult(result).value
    if not re.match(r"^[a-z][a-z0-9_]*$", check):
        raise ConfigError(f"check name {check!r} must be lower_snake_case")
    if check in COMPUTED_CHECKS:
        raise ConfigError(f"{check} is computed at registration ({COMPUTED_CHECKS[check]}); "
                          "it cannot be checked off")
    who = as_ or found.ci.get("GITLAB_USER_LOGIN")
    if not who:
        raise ConfigError("say who records the check with --as NAME")
    registry.require_version(cfg.name, version)
    trail.write(event(Action.CHECK_RECORDED, "registry", None, version, who,
                      comment=evidence, check=check, result=outcome,
                      policy_sha256=loaded.sha256))
    typer.echo(f"{cfg.name} v{version}: {check} {outcome} (recorded by {who})")


def report_path(home: Path, model: str, version: str) -> Path:
    return home / "reports" / "compliance" / f"{model}-v{version}.html"
