"""Reproduction checks, pure functions: can a registered version be rebuilt from its lineage
alone (same data, config, code; what environment it was built in), and how a rebuilt booster
and model folder compare with the registered ones. `mlops reproduce` wires them together."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from tasks.core import integrity
from tasks.core.config import ModelConfig
from tasks.core.errors import LineageIncomplete
from tasks.core.redact import redact
from tasks.training.fingerprint import as_of_fingerprint, source_fingerprint

# the tags without which a version cannot be rebuilt and compared
REQUIRED = ("data_fingerprint", "config_hash", "code_hash", "device", "artifact_sha256")
# files of a model folder that record the evaluation of the day (the gate against the champion
# of that day, the test-set profile), not what training produced: never rebuilt
NOT_REBUILT = ("model_card.md", "reference_profile.json")
# MLmodel keys that differ on every save of the same model (`uri`: the temporary folder an
# artifact was copied from)
_VOLATILE = ("utc_time_created", "model_uuid", "run_id", "model_id", "uri")


def check_lineage(label: str, tags: Mapping[str, str], source: str) -> None:
    """LineageIncomplete (exit 2) naming what is missing for a rebuild."""
    missing = [t for t in REQUIRED if not tags.get(t)]
    if missing:
        raise LineageIncomplete(f"{label} lacks lineage tag(s) {', '.join(missing)}: it cannot "
                                "be rebuilt from its lineage (registered before lineage was "
                                "recorded, or the tags were removed)")
    if source == "snowflake" and not tags.get("data_at"):
        raise LineageIncomplete(f"{label} read a Snowflake query without a time-travel point "
                                "(no data_at tag): the rows it saw cannot be read again; "
                                "retrain it to record one")


def timeout_note(label: str, params: Mapping[str, str]) -> str | None:
    """What to say when the version's study had a time limit (its run's params)."""
    value = params.get("training.timeout_s")
    if value in (None, "", "None"):
        return None
    return (f"{label} was trained with training.timeout_s={value}: how many trials finished "
            "depended on the machine's speed, so a rebuild may differ for that reason alone "
            "(leave timeout_s out of configs whose versions must reproduce)")


def input_differences(cfg: ModelConfig, tags: Mapping[str, str], code: str) -> list[str]:
    """Why the inputs cannot be the ones the version was trained on: config, code, data (a
    query's data is checked once it is read). Empty when they can be the same."""
    out = []
    if cfg.config_hash() != tags["config_hash"]:
        out.append(f"config changed since: configs/models/{cfg.name}.yaml hashes to "
                   f"{cfg.config_hash()[:12]}…, the version recorded {tags['config_hash'][:12]}…")
    if code != tags["code_hash"]:
        out.append(f"code changed since: tasks/ and flows/ hash to {code[:12]}…, the version "
                   f"recorded {tags['code_hash'][:12]}…")
    if out and tags.get("git_commit"):
        out.append(f"check out commit {tags['git_commit']} to rebuild it as it was")
    fingerprint = source_fingerprint(cfg.data)
    if fingerprint is not None:
        if tags.get("as_of"):
            fingerprint = as_of_fingerprint(fingerprint, tags["as_of"])
        if fingerprint != tags["data_fingerprint"]:
            out.insert(0, data_changed(cfg, fingerprint, tags["data_fingerprint"]))
    return out


def data_changed(cfg: ModelConfig, now: str, then: str) -> str:
    where = {"file": redact(cfg.data.path or ""), "snowflake": "the query's rows"}.get(cfg.data.source,
                                                                          "synthetic data")
    return (f"data changed since: {where} fingerprints to {now[:12]}…, the version was "
            f"trained on {then[:12]}…; refusing to compare")


def environment_differences(recorded: str | None, current: str) -> list[str]:
    """What differs between the recorded environment (`key=value …`) and this one."""
    if not recorded:
        return ["environment not recorded with the version (registered before it was)"]
    then, now = _pairs(recorded), _pairs(current)
    return [f"{key} {then.get(key, '?')} then, {now.get(key, '?')} now"
            for key in sorted(then.keys() | now.keys()) if then.get(key) != now.get(key)]


def _pairs(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split() if "=" in item)


def _trees(raw: bytes) -> tuple[list[dict], dict]:
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray(raw))
    model = json.loads(bytes(booster.save_raw(raw_format="json")))
    trees = model["learner"]["gradient_booster"]["model"]["trees"]
    for tree in trees:
        tree.pop("id", None)
    return trees, model["learner"].get("learner_model_param", {})


def booster_difference(registered: bytes, rebuilt: bytes) -> str | None:
    """None when the boosters are byte-identical, else where they first differ."""
    if registered == rebuilt:
        return None
    old, old_param = _trees(registered)
    new, new_param = _trees(rebuilt)
    for i, (a, b) in enumerate(zip(old, new, strict=False)):
        if a != b:
            return f"booster differs from tree {i} on (of {len(old)} registered, {len(new)} rebuilt)"
    if len(old) != len(new):
        return (f"booster differs in length: {len(old)} trees registered, {len(new)} rebuilt "
                f"(the first {min(len(old), len(new))} are identical)")
    if old_param != new_param:
        return "booster's trees are identical; its learner parameters differ"
    return "booster's trees are identical; its serialized bytes differ (metadata)"


def _mlmodel(path: Path) -> str:
    lines = path.read_text().splitlines()
    return "\n".join(line for line in lines if line.split(":", 1)[0].strip() not in _VOLATILE)


def folder_differences(registered: Path, rebuilt: Path) -> tuple[int, list[str]]:
    """(files compared and identical, files that differ) between a registered model folder and
    one rebuilt from the retrained booster; MLmodel is compared without its save-time keys."""
    same, differ = 0, []
    listed = json.loads((registered / integrity.MANIFEST).read_bytes())["files"] if (
        registered / integrity.MANIFEST).is_file() else []
    names = sorted({name for name, _, _ in listed} | {
        p.relative_to(rebuilt).as_posix() for p in rebuilt.rglob("*") if p.is_file()})
    for name in names:
        if name in NOT_REBUILT or name == integrity.MANIFEST:
            continue
        a, b = registered / name, rebuilt / name
        if not a.is_file() or not b.is_file():
            differ.append(f"{name} ({'missing from the rebuild' if a.is_file() else 'new'})")
        elif a.read_bytes() == b.read_bytes() or (
                name.endswith("MLmodel") and _mlmodel(a) == _mlmodel(b)):
            same += 1
        else:
            differ.append(name)
    return same, differ
