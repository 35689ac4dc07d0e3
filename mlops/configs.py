"""`mlops models | check-config | check-deployments`: what is configured, and is it right."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlops.app import JsonOption, app, print_json, print_table, settings
from tasks.core.errors import ExitCode


@app.command()
def models(as_json: JsonOption = False) -> None:
    """List the configured models under configs/models (MLOPS_CONFIG_DIR), each checked against
    the organisation policy (configs/policy.yaml, MLOPS_POLICY).
    Exit codes: 0 all valid, 2 a config or the policy is invalid (named in the table)."""
    from tasks.core.config import ConfigError, list_configs
    from tasks.core.policy_config import config_problems, load_policy

    config_dir = settings().config_dir
    policy = load_policy(settings().policy_path).policy
    found = list_configs(config_dir)
    if not found and not as_json:
        typer.echo(f"no model configs in {config_dir}")
        return
    rows = []
    for path, cfg in found:
        if isinstance(cfg, ConfigError):
            rows.append((path.stem, "INVALID", "-", "-", str(cfg)))
        elif config_problems(policy, cfg.registry):
            rows.append((cfg.name, "INVALID", "-", "-",
                         "policy: " + "; ".join(config_problems(policy, cfg.registry))))
        else:
            rows.append((cfg.name, cfg.task, cfg.target, cfg.gate.metric, cfg.data.source))
    if as_json:
        print_json([dict(zip(("model", "task", "target", "gate_metric", "data"), row,
                             strict=True)) | {"valid": row[1] != "INVALID"} for row in rows])
    else:
        print_table(("model", "task", "target", "gate metric", "data"), rows)
    if any(r[1] == "INVALID" for r in rows):
        raise typer.Exit(ExitCode.BAD_INPUT)


@app.command("check-config")
def check_config(
    path: Annotated[Path, typer.Argument(help="Model YAML to validate.")],
    as_json: JsonOption = False,
) -> None:
    """Validate a model YAML against the schema and the organisation policy (configs/policy.yaml,
    MLOPS_POLICY: required tags and their allowed values).
    Exit codes: 0 valid, 2 invalid (the offending key, or the tag and its allowed values)."""
    from tasks.core.config import load_config
    from tasks.core.policy_config import load_policy, require_compliant_config

    found = settings()
    loaded = load_policy(found.policy_path)
    cfg = load_config(str(path), found.config_dir)
    require_compliant_config(loaded, str(path), cfg.registry)
    if as_json:
        print_json({"path": str(path), "valid": True, "model": cfg.name, "task": cfg.task,
                    "target": cfg.target, "gate_metric": cfg.gate.metric,
                    "gate_threshold": cfg.gate.threshold, "policy": loaded.label})
        return
    typer.echo(f"{path}: ok ({cfg.name}, {cfg.task}, target {cfg.target}, "
               f"gate {cfg.gate.metric} {cfg.gate.threshold}; {loaded.label})")


@app.command("check-deployments")
def check_deployments(
    prefect_file: Annotated[Path, typer.Option(help="The prefect.yaml to check.")
                            ] = Path("prefect.yaml"),
    as_json: JsonOption = False,
) -> None:
    """Check prefect.yaml against configs/models and deployments/pools.yaml: every model has its
    training-pipeline deployment on the work pool its config names, with the weekly schedule and
    the retrain-on-drift trigger, and daily batch-scoring and monitoring deployments.
    Exit codes: 0 consistent, 2 one line per problem."""
    from deployments.manifest import check_manifest

    problems = check_manifest(prefect_file, settings().config_dir)
    if as_json:
        print_json({"path": str(prefect_file), "valid": not problems, "problems": problems})
        raise typer.Exit(ExitCode.BAD_INPUT if problems else ExitCode.DONE)
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        raise typer.Exit(ExitCode.BAD_INPUT)
    typer.echo(f"{prefect_file}: ok")
