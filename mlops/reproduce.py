"""`mlops reproduce`: rebuild a registered version from its lineage and compare it bit for bit.
Reads the registry, registers nothing and moves no alias."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from mlops.app import app, model_config
from tasks.core.errors import ExitCode


@app.command()
def reproduce(
    model: Annotated[str, typer.Argument(help="Model name under configs/models (or a YAML path).")],
    version: Annotated[str | None, typer.Argument(
        help="The registered version, or an alias (champion).", show_default=False)] = None,
    show_commit: Annotated[bool, typer.Option(
        "--show-commit", help="Only print the git commit the version was trained from (CI checks "
        "it out, then reproduces there).")] = False,
    old_version: Annotated[str | None, typer.Option("--version", "-v", hidden=True)] = None,
) -> None:
    """Retrain a registered version from its lineage alone (data fingerprint, config hash, code
    hash, seed, device) and compare the new booster, and every file of the model folder, with
    the registered ones. Registers nothing and moves no alias.

    It refuses to compare when the inputs cannot be the ones the version saw: data whose
    fingerprint changed, a config or code that hashes differently (check out the version's
    git_commit), a Snowflake query without a recorded time-travel point.
    Exit codes: 0 reproduced bit for bit, 1 something differs (each named), 2 lineage
    incomplete or bad input.
    """
    from tasks.adapters.registries import open_registry
    from tasks.core.device import select_device
    from tasks.core.errors import ConfigError, LineageIncomplete, UnknownVersion
    from tasks.core.lineage import code_hash, environment
    from tasks.training import reproduce as rp

    version = version or old_version
    if not version:
        raise ConfigError(f"say which version to rebuild: mlops reproduce {model} VERSION")
    found, cfg = model_config(model)
    registry = open_registry(found)
    if not version.isdigit():
        aliased = registry.alias_version(cfg.name, version)
        if aliased is None:
            raise UnknownVersion(f"{cfg.name} has no alias {version!r}: give a version number")
        version = aliased
    ref = registry.require_version(cfg.name, version)
    label = f"{cfg.name} v{ref.version}"
    if show_commit:
        if not ref.tags.get("git_commit"):
            raise LineageIncomplete(f"{label} has no git_commit tag")
        typer.echo(ref.tags["git_commit"])
        return
    rp.check_lineage(label, ref.tags, cfg.data.source)
    params = registry.run_params(ref.run_id) if ref.run_id else {}
    note = rp.timeout_note(label, params)
    if note:
        typer.echo(f"note: {note}")
    blockers = rp.input_differences(cfg, ref.tags, code_hash())
    device = ref.tags["device"]
    if device != "cpu" and select_device(device, found.cuda_visible_devices) != device:
        blockers.append(f"environment differs: {label} was trained on {device}, which this "
                        "machine does not have")
    if blockers:
        _differs(label, blockers)
    env = rp.environment_differences(ref.tags.get("environment"), environment())
    typer.echo(f"{label}: inputs match its lineage (data {ref.tags['data_fingerprint'][:12]}…, "
               f"config {ref.tags['config_hash'][:12]}…, code {ref.tags['code_hash'][:12]}…, "
               f"seed {cfg.training.seed}, device {device}); retraining…")
    with tempfile.TemporaryDirectory(prefix="mlops-reproduce-") as tmp:
        found_diffs = _rebuild_and_compare(registry, cfg, ref, device, Path(tmp), found.snowflake)
    if found_diffs:
        _differs(label, found_diffs + [f"environment differs: {d}" for d in env])
    for diff in env:
        typer.echo(f"note: environment differs ({diff}), yet the result is identical")
    typer.echo(f"{label}: reproduced bit for bit")


def _rebuild_and_compare(registry, cfg, ref, device: str, work: Path, snowflake) -> list[str]:
    """Retrain on the same inputs; what differs from the registered version (empty: nothing)."""
    from datetime import date

    from tasks.core.errors import DataError
    from tasks.core.tasktypes import task_type
    from tasks.training import reproduce as rp
    from tasks.training.boosting import fit_params
    from tasks.training.data import load_dataset
    from tasks.training.register import build_model_dir, input_example
    from tasks.training.threshold import with_threshold
    from tasks.training.train import feature_spec, split_rows, train_model
    from tasks.training.validate import ensure_valid, validate_frame
    from tasks.training.workers import winning_params

    as_of = date.fromisoformat(ref.tags["as_of"]) if ref.tags.get("as_of") else None
    data = load_dataset(cfg.data, as_of=as_of, at=ref.tags.get("data_at"),
                        snowflake_settings=snowflake)
    if data.fingerprint != ref.tags["data_fingerprint"]:
        return [rp.data_changed(cfg, data.fingerprint, ref.tags["data_fingerprint"])]
    if data.frame is None:  # a table read in batches
        raise DataError(f"{data.source}: streamed in batches; reproduce retrains on it whole")
    frame = data.frame
    report = ensure_valid(validate_frame(frame, cfg))
    spec = feature_spec(frame, report, cfg)
    splits = split_rows(spec.encode_target(frame[cfg.target]), cfg.training,
                        task_type(cfg.task))
    winner = winning_params(ref.tags)
    if winner is None:
        trained = train_model(frame, spec, splits, cfg.training, device,
                              study_name=f"reproduce-{cfg.name}-{ref.version}", storage=None,
                              progress=lambda _: None)
    else:  # the order of a parallel search's trials depends on timing; its winner does not
        typer.echo(f"note: {cfg.name} v{ref.version} was tuned by {ref.tags.get('tuning_workers')} "
                   f"workers in parallel (study {ref.tags.get('tuning_study')}): an asynchronous "
                   "search is not bit-reproducible, only its winner is; retraining the winning "
                   "parameters")
        trained = fit_params(frame, spec, splits, cfg.training, device, winner)
    # the decision threshold is chosen on the validation rows, as in training
    trained = with_threshold(trained, frame.iloc[splits.valid], cfg.threshold)
    local = registry.download_version(cfg.name, ref.version, work / "registered")
    registered = next(local.path.rglob("*.ubj")).read_bytes()
    diffs = []
    booster = rp.booster_difference(registered, trained.raw_booster())
    if booster:
        diffs.append(booster)
    (work / "rebuilt").mkdir()
    card = local.path / "model_card.md"
    rebuilt = build_model_dir(trained, input_example(frame.iloc[splits.test], spec),
                              work / "rebuilt" / "model",
                              card.read_text() if card.is_file() else "")
    same, files = rp.folder_differences(local.path, rebuilt)
    typer.echo(f"retrained in {trained.duration_s:.0f} s ({len(trained.trials)} trials, "
               f"{trained.n_pruned} pruned, best iteration {trained.best_iteration})")
    typer.echo(f"booster: {booster or 'identical'}; model folder: {same} "
               f"file(s) identical{', ' + str(len(files)) + ' differ' if files else ''} "
               f"({', '.join(rp.NOT_REBUILT)} record the evaluation of the day: not rebuilt)")
    diffs += [f"file differs: {name}" for name in files]
    return diffs


def _differs(label: str, lines: list[str]) -> None:
    for line in lines:
        typer.echo(f"  - {line}")
    typer.echo(f"{label}: NOT reproduced ({len(lines)} difference(s) above)")
    raise typer.Exit(ExitCode.FAILED)
