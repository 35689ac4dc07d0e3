"""The pure parts of `mlops reproduce`: lineage checks, what the inputs say, the first differing
tree, folder comparison, and the Snowflake time-travel point."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from tasks.adapters.snowflake import read_only_query, time_travel
from tasks.core.config import DataSpec
from tasks.core.errors import DataError, LineageIncomplete
from tasks.core.lineage import environment
from tasks.training import reproduce as rp
from tasks.training.data import load_dataset
from tasks.training.fingerprint import source_fingerprint

TAGS = {"data_fingerprint": "d", "config_hash": "c", "code_hash": "k", "device": "cpu",
        "artifact_sha256": "a"}


def booster(rounds: int, seed: int = 0, depth: int = 3) -> bytes:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 4)), rng.integers(0, 2, 300)
    model = xgb.train({"max_depth": depth, "seed": seed, "subsample": 0.7, "nthread": 1},
                      xgb.DMatrix(X, y), num_boost_round=rounds)
    return bytes(model.save_raw(raw_format="ubj"))


def test_missing_tags_and_a_snowflake_version_without_time_travel_are_incomplete():
    rp.check_lineage("m v1", TAGS, "synthetic")
    with pytest.raises(LineageIncomplete, match="lacks lineage tag\\(s\\) code_hash, device"):
        rp.check_lineage("m v1", {k: v for k, v in TAGS.items()
                                  if k not in ("code_hash", "device")}, "synthetic")
    with pytest.raises(LineageIncomplete, match="without a time-travel point"):
        rp.check_lineage("m v1", TAGS, "snowflake")
    rp.check_lineage("m v1", {**TAGS, "data_at": "2026-12-01T04:00:00+00:00"}, "snowflake")
    assert LineageIncomplete.exit_code == 2


def test_config_code_and_data_differences_are_named(make_config):
    cfg = make_config()
    same = {**TAGS, "config_hash": cfg.config_hash(), "code_hash": "k",
            "data_fingerprint": source_fingerprint(cfg.data), "git_commit": "abc123"}
    assert rp.input_differences(cfg, same, "k") == []
    changed = rp.input_differences(cfg, {**same, "config_hash": "0" * 64,
                                         "data_fingerprint": "1" * 64}, "other")
    assert changed[0].startswith("data changed since") and "refusing to compare" in changed[0]
    assert any(d.startswith("config changed since") for d in changed)
    assert any(d.startswith("code changed since") for d in changed)
    assert changed[-1] == "check out commit abc123 to rebuild it as it was"


def test_timeout_is_said():
    assert rp.timeout_note("m v1", {"training.timeout_s": "None"}) is None
    assert "timeout_s=600" in rp.timeout_note("m v1", {"training.timeout_s": "600"})


def test_environment_differences_name_the_package():
    now = environment()
    assert "xgboost=" in now and "cpus=" in now
    assert rp.environment_differences(now, now) == []
    then = now.replace("xgboost=", "xgboost=0.0.0-")
    assert rp.environment_differences(then, now)[0].startswith("xgboost 0.0.0-")
    assert "not recorded" in rp.environment_differences(None, now)[0]


def test_the_environment_names_python_and_the_numerical_stack():
    """What uv.lock keeps to one version per package (tests/unit/test_lock.py) is recorded with
    every version, so a rebuild on another Python names the package that differs."""
    from tests.unit.test_lock import NUMERICAL_STACK

    recorded = dict(item.split("=", 1) for item in environment().split())
    assert {"python", *NUMERICAL_STACK} <= recorded.keys(), recorded
    # xgboost-cpu (a default install) is the xgboost module under another distribution name
    assert recorded["xgboost"] != "absent", recorded


def test_booster_difference_names_the_first_differing_tree():
    ten = booster(10)
    assert rp.booster_difference(ten, ten) is None
    assert rp.booster_difference(ten, booster(12)) == (
        "booster differs in length: 10 trees registered, 12 rebuilt (the first 10 are identical)")
    other = rp.booster_difference(ten, booster(10, seed=5))
    assert other.startswith("booster differs from tree ") and "(of 10 registered" in other


def test_folder_comparison_ignores_save_time_keys_but_not_content(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    for folder, stamp in ((old, "2026-01-01"), (new, "2026-02-02")):
        folder.mkdir()
        (folder / "MLmodel").write_text(f"utc_time_created: '{stamp}'\nflavors: x\n")
        (folder / "model_card.md").write_text(stamp)  # not rebuilt: never compared
        (folder / "input_example.json").write_text("[1]")
    assert rp.folder_differences(old, new) == (2, [])
    (new / "input_example.json").write_text("[2]")
    (new / "MLmodel").write_text("utc_time_created: 'x'\nflavors: y\n")
    assert rp.folder_differences(old, new) == (0, ["MLmodel", "input_example.json"])


def test_time_travel_point_goes_where_the_query_says():
    query = "select * from claims {at} where amount > 0"
    moved = time_travel(query, "2026-12-01T04:00:00+00:00")
    assert moved == ("select * from claims AT(TIMESTAMP => '2026-12-01T04:00:00+00:00'"
                     "::timestamp_tz) where amount > 0")
    assert read_only_query(moved) == moved  # still one read-only statement
    with pytest.raises(DataError, match="not an ISO timestamp"):
        time_travel(query, "yesterday'; drop table claims")
    with pytest.raises(DataError, match="no time zone"):
        time_travel(query, "2026-12-01T04:00:00")


def test_a_query_with_the_placeholder_records_its_point_and_rereads_it():
    seen: list[str] = []

    def reader(query: str):
        seen.append(query)
        import pandas as pd

        return pd.DataFrame({"a": [1]}), f"fp-{query}"

    spec = DataSpec(source="snowflake", query="select * from claims {at}")
    first = load_dataset(spec, query_reader=reader)
    assert first.at and "AT(TIMESTAMP => '" + first.at in seen[0]
    again = load_dataset(spec, query_reader=reader, at=first.at)
    assert seen[1] == seen[0] and again.fingerprint == first.fingerprint and again.at == first.at
    plain = load_dataset(DataSpec(source="snowflake", query="select * from claims"),
                         query_reader=reader)
    assert plain.at is None and seen[-1] == "select * from claims"
