import numpy as np
import pandas as pd
import pytest

from tasks.contracts.training import Splits
from tasks.training.batches import (
    TEST,
    TRAIN,
    VALID,
    BatchTable,
    frame_reader,
    hash_split_rows,
    split_codes,
)
from tasks.training.matrices import stream_matrices
from tasks.training.train import MAX_BIN, feature_spec, train_model
from tasks.training.validate import validate_frame


def _table(frame, cfg, batch_rows=250, **kw):
    t = cfg.training
    return BatchTable(frame_reader(frame, batch_rows), "test", t.seed, t.test_size,
                      t.validation_size, progress=lambda m: None, **kw)


def test_split_codes_are_stable_per_row_whatever_the_batching():
    whole = split_codes(10_000, 5, 0.2, 0.2)
    parts = np.concatenate([split_codes(1000, 5, 0.2, 0.2, start=s) for s in range(0, 10_000, 1000)])
    assert (whole == parts).all()
    assert abs((whole == TEST).mean() - 0.2) < 0.02
    assert abs((whole == VALID).mean() - 0.16) < 0.02
    assert not (whole == split_codes(10_000, 6, 0.2, 0.2)).all()  # the seed matters


def test_split_by_key_follows_the_row_not_its_position():
    keys = pd.Series([f"C{i}" for i in range(5000)])
    codes = split_codes(5000, 1, 0.2, 0.2, keys=keys)
    shuffled = np.random.default_rng(0).permutation(5000)
    again = split_codes(5000, 1, 0.2, 0.2, keys=keys[shuffled].reset_index(drop=True))
    assert (codes[shuffled] == again).all()


def test_hash_stratified_split_is_exact_per_class_and_the_same_on_both_paths(claims, make_config):
    cfg = make_config()
    t = cfg.training
    train, valid, test = hash_split_rows(claims, t.seed, t.test_size, t.validation_size,
                                         stratify=cfg.target)
    for cls, rows in claims.groupby(cfg.target).groups.items():
        n, in_test = len(rows), claims.index[test].isin(rows).sum()
        assert abs(in_test - n * t.test_size) <= 2, cls  # plain hashing: only in expectation
        in_valid = claims.index[valid].isin(rows).sum()
        assert abs(in_valid - n * (1 - t.test_size) * t.validation_size) <= 2, cls
    for batch_rows in (37, 500):
        table = _table(claims, cfg, batch_rows=batch_rows, stratify=cfg.target)
        streamed = pd.concat(list(table.frames(TEST)), ignore_index=True)
        pd.testing.assert_frame_equal(streamed, claims.iloc[test].reset_index(drop=True))
    assert not np.array_equal(test, hash_split_rows(claims, t.seed + 1, t.test_size,
                                                    t.validation_size, stratify=cfg.target)[2])


def test_hash_stratified_split_needs_classes():
    from tasks.core.config import parse_config
    from tasks.core.errors import ConfigError
    from tests.conftest import config_yaml

    def split(task: str) -> str:
        return config_yaml(task).replace("max_rounds: 60", "max_rounds: 60, split: hash-stratified")

    assert parse_config(split("multiclass")).training.split == "hash-stratified"
    with pytest.raises(ConfigError, match="hash-stratified needs classes"):
        parse_config(split("regression"))


def test_table_passes_keep_one_split_in_bounded_batches(claims, make_config):
    cfg = make_config()
    table = _table(claims, cfg, batch_rows=200)
    parts = {p: pd.concat(list(table.frames(p))) for p in (TRAIN, VALID, TEST)}
    train, valid, test = hash_split_rows(claims, cfg.training.seed, cfg.training.test_size,
                                         cfg.training.validation_size)
    assert parts[TRAIN].claim_id.tolist() == claims.claim_id.iloc[train].tolist()
    assert parts[TEST].claim_id.tolist() == claims.claim_id.iloc[test].tolist()
    assert sum(len(p) for p in parts.values()) == len(claims)
    assert max(len(f) for f in table.frames()) <= 200


@pytest.mark.parametrize(("task", "stratified"), [("binary", False), ("multiclass", False),
                                                  ("regression", False), ("binary", True)])
def test_streaming_and_in_memory_give_the_same_booster(make_config, tmp_path, task, stratified):
    from tasks.training.synthetic import generate_claims

    frame = generate_claims(400, seed=11)
    cfg = make_config(task, n_trials=2)
    stratify = cfg.target if stratified else None
    spec = feature_spec(frame, validate_frame(frame, cfg), cfg)
    train, valid, test = hash_split_rows(frame, cfg.training.seed, cfg.training.test_size,
                                         cfg.training.validation_size, stratify=stratify)
    memory = train_model(frame, spec, Splits(train=train, valid=valid, test=test), cfg.training,
                         "cpu", "mem", progress=lambda m: None)
    with stream_matrices(_table(frame, cfg, batch_rows=64, stratify=stratify), spec,
                         cfg.training, MAX_BIN, tmp_path) as matrices:
        assert matrices[0].num_row() == len(train)
        streamed = train_model(None, spec, None, cfg.training, "cpu", "stream",
                               progress=lambda m: None, matrices=matrices)
    assert streamed.raw_booster() == memory.raw_booster()


def test_external_memory_trains_and_removes_its_cache(claims, make_config, tmp_path):
    cfg = make_config(n_trials=1)
    training = cfg.training.model_copy(update={"external_memory": True})
    spec = feature_spec(claims, validate_frame(claims, cfg), cfg)
    with stream_matrices(_table(claims, cfg), spec, training, MAX_BIN, tmp_path) as matrices:
        assert any(tmp_path.iterdir())  # the pages' folder, while training
        result = train_model(None, spec, None, training, "cpu", "ext", progress=lambda m: None,
                             matrices=matrices)
    assert result.best_iteration >= 0
    assert not any(tmp_path.iterdir())


def test_generate_writes_a_dataset_folder_whole(tmp_path):
    from tasks.adapters.sinks import write_frame
    from tasks.core.errors import ConfigError
    from tasks.training.batches import parquet_files, parquet_reader
    from tasks.training.synthetic import generate_claims, write_parts

    claims = generate_claims(1000, seed=2)
    write_parts(claims, tmp_path / "ds", 3, write_frame)
    files = parquet_files(str(tmp_path / "ds"))
    assert [f.rsplit("/", 1)[-1] for f in files] == [f"part-0000{i}.parquet" for i in range(3)]
    back = pd.concat([b.to_pandas() for b in parquet_reader(files, 100)()], ignore_index=True)
    assert back.claim_id.tolist() == claims.claim_id.tolist()

    def failing(frame, path):
        if path.name.endswith("1.parquet"):
            raise OSError("disk full")
        write_frame(frame, path)

    with pytest.raises(OSError):
        write_parts(claims, tmp_path / "broken", 3, failing)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # nothing half-written
    with pytest.raises(ConfigError, match="not empty"):
        write_parts(claims, tmp_path / "ds", 2, write_frame)


def _broken_claims(claims):
    bad = claims.copy()
    bad["police_report"] = bad["police_report"].astype(float)
    bad.loc[bad.index[::97], "police_report"] = np.inf  # infinities spread over batches
    bad.loc[bad.index[5], "customer_age"] = np.nan
    bad["hour_text"] = bad["hour_of_day"].astype(str)
    bad.loc[bad.index[700], "hour_text"] = "noon"  # text in a numeric column, in one batch only
    return pd.concat([bad, bad.iloc[:7]], ignore_index=True)  # duplicate rows


def _leaky(claims, target):
    leaky = claims.copy()
    codes = leaky[target].astype("category").cat.codes if target == "damage_severity" \
        else leaky[target]
    leaky["leak"] = codes * 2.0 + 1  # a copy of the target
    return leaky


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_validation_over_batches_finds_what_the_whole_frame_does(claims, make_config, task):
    from tasks.training.validate import validate_frames

    cfg = make_config(task)
    found = {}
    for name, frame in (("clean", claims), ("broken", _broken_claims(claims)),
                        ("leaky", _leaky(claims, cfg.target))):
        whole = validate_frame(frame, cfg)
        batched = validate_frames((frame.iloc[i:i + 100] for i in range(0, len(frame), 100)), cfg)
        assert batched.model_dump() == whole.model_dump()
        assert batched.categories == whole.categories
        found[name] = whole
    assert found["clean"].passed
    broken = found["broken"]
    assert "column 'police_report' has 17 infinite value(s) (±inf)" in broken.errors
    assert "column 'hour_text' is numeric but holds text (e.g. 'noon')" in broken.errors
    assert "7 duplicate row(s)" in broken.warnings
    leaks = [e for e in found["leaky"].errors if "looks like a leak" in e]
    assert leaks == (["column 'leak' looks like a leak of the target (correlation 1.000); "
                      "exclude it"] if task != "multiclass" else [])  # text classes: no order


def _trained(claims, cfg):
    spec = feature_spec(claims, validate_frame(claims, cfg), cfg)
    train, valid, test = hash_split_rows(claims, cfg.training.seed, cfg.training.test_size,
                                         cfg.training.validation_size)
    result = train_model(claims, spec, Splits(train=train, valid=valid, test=test),
                         cfg.training, "cpu", "t", progress=lambda m: None)
    return result, Splits(train=train, valid=valid, test=test)


def test_threshold_profile_and_test_set_over_batches_match_the_whole_frame(claims, make_config):
    from tasks.batch.profiles import profile_batches, profile_training_data
    from tasks.contracts.training import EvalReport
    from tasks.core.decision import ThresholdSpec
    from tasks.training.evaluate import compact_test
    from tasks.training.threshold import with_threshold, with_threshold_over

    cfg = make_config(n_trials=1)
    trained, splits = _trained(claims, cfg)
    table = _table(claims, cfg, batch_rows=128)
    rule = ThresholdSpec(cost={"fp": 1, "fn": 10})
    whole = with_threshold(trained, claims.iloc[splits.valid], rule)
    batched = with_threshold_over(trained, table.frames(VALID), rule)
    assert batched.feature_spec.threshold == whole.feature_spec.threshold != 0.5

    report = EvalReport(primary_metric="roc_auc", metrics={"roc_auc": 0.9}, slices={},
                        test_rows=1)
    expected = profile_training_data.fn(claims, splits.train, trained, report, 10)
    streamed = profile_batches(table.passes(TRAIN, "profile"), trained, report, 10)
    assert streamed.rows == len(splits.train)
    assert {k: c.model_dump() for k, c in streamed.columns.items()} == \
        {k: c.model_dump() for k, c in expected.columns.items()}
    assert streamed.attributions == pytest.approx(expected.attributions, rel=1e-5)

    test = compact_test(table.frames(TEST), trained.feature_spec, cfg.slices)
    assert len(test) == len(splits.test)
    assert test["region"].dtype == "category"
    assert (test["claim_amount"].to_numpy() == claims["claim_amount"].iloc[splits.test]).all()


def test_external_memory_above_the_budget_or_when_asked(make_config):
    from tasks.training.matrices import external_memory

    training = make_config().training
    table = BatchTable(lambda: iter(()), "t", 1, 0.2, 0.2, estimated_bytes=3 * 2**30)
    assert not external_memory(table, training)
    assert external_memory(table, training.model_copy(update={"memory_budget": 2**30}))
    assert not external_memory(table, training.model_copy(update={"memory_budget": 4 * 2**30}))
    assert external_memory(table, training.model_copy(update={"external_memory": True}))


def test_large_table_settings_are_checked(make_config):
    from tasks.core.config import parse_config
    from tasks.core.errors import ConfigError
    from tests.conftest import config_yaml

    cfg = parse_config(config_yaml(data="data: {source: file, path: 's3://b/claims/', key: id}")
                       .replace("max_rounds: 60}", "max_rounds: 60, memory_budget: 4GiB}"))
    assert cfg.training.memory_budget == 4 * 2**30 and cfg.data.key == "id"
    with pytest.raises(ConfigError, match="memory_budget"):
        parse_config(config_yaml().replace("max_rounds: 60}", "max_rounds: 60, "
                                           "memory_budget: lots}"))
    with pytest.raises(ConfigError, match="must end in .csv, .parquet or /"):
        parse_config(config_yaml(data="data: {source: file, path: 'claims'}"))


def test_as_of_leaves_out_later_rows_in_every_pass(claims, make_config):
    from datetime import date

    cfg = make_config()
    table = _table(claims, cfg, date_column="event_date", as_of=date(2024, 12, 31))
    kept = pd.concat(list(table.frames()))
    assert len(kept) == int((claims.event_date <= "2024-12-31").sum()) < len(claims)
    codes = pd.concat(list(table.frames(TEST)))
    _, _, test = hash_split_rows(claims, cfg.training.seed, 0.2, 0.2)
    early = claims.iloc[test]
    assert codes.claim_id.tolist() == early[early.event_date <= "2024-12-31"].claim_id.tolist()


def test_a_bad_dataset_folder_is_one_clear_error(tmp_path, make_config):
    from tasks.core.errors import DataError
    from tasks.training.data import open_table

    cfg = make_config()
    (tmp_path / "empty").mkdir()
    for path, message in ((tmp_path / "empty", "holds no .parquet files"),
                          (tmp_path / "absent", "does not exist")):
        spec = cfg.data.model_copy(update={"source": "file", "path": f"{path}/"})
        with pytest.raises(DataError, match=message):
            open_table(spec, cfg.training)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "part-0.parquet").write_bytes(b"not parquet")
    spec = cfg.data.model_copy(update={"source": "file", "path": f"{tmp_path / 'bad'}/"})
    with pytest.raises(DataError, match="part-0.parquet"):
        open_table(spec, cfg.training)


def test_a_large_test_set_is_scored_in_pieces_with_the_same_scores(claims, make_config):
    from tasks.training.evaluate import booster_scores

    for task in ("binary", "multiclass"):
        cfg = make_config(task)
        trained, _ = _trained(claims, cfg)
        booster, spec = trained.booster(), trained.feature_spec
        whole = booster_scores(booster, spec, claims, rows=len(claims))
        pieces = booster_scores(booster, spec, claims, rows=97)  # a short last piece too
        assert pieces.shape == whole.shape and pieces.tobytes() == whole.tobytes()
        assert booster_scores(booster, spec, claims.iloc[:0]).shape[0] == 0


@pytest.mark.parametrize("values, classes", [
    ([1, 0, 1, 1], ["0", "1"]),                                   # integers
    ([1.0, 0.0, 1.0, 0.0], ["0.0", "1.0"]),                       # floats, as text "1.0"
    ([True, False, False, True], ["False", "True"]),              # booleans
    (["minor", "severe", "minor", "total_loss"], ["minor", "moderate", "severe", "total_loss"]),
])
def test_target_codes_are_the_classes_positions_of_each_value_as_text(values, classes):
    from tasks.contracts.training import FeatureSpec

    spec = FeatureSpec(task="multiclass", target="y", features=[], categories={},
                       classes=classes)
    for y in (pd.Series(values), pd.Series(values, dtype="category")):
        expected = [classes.index(str(v)) for v in values]  # the per-row text lookup it replaced
        codes = spec.encode_target(y)
        assert codes.dtype == np.int64 and codes.tolist() == expected


def test_a_target_value_outside_the_classes_is_refused_not_coded():
    from tasks.contracts.training import FeatureSpec

    spec = FeatureSpec(task="binary", target="y", features=[], categories={}, classes=["0", "1"])
    for y in (pd.Series([0, 1, 2]), pd.Series([0.0, None, 1.0]), pd.Series([None, None])):
        with pytest.raises(ValueError, match="outside the model's classes"):
            spec.encode_target(y)


def test_duplicate_rows_are_counted_across_batches_and_counting_twice_agrees(claims):
    from tasks.training.checks import TableFacts

    frame = pd.concat([claims, claims.iloc[:5], claims.iloc[100:103]], ignore_index=True)
    facts = TableFacts("is_fraud", set(), [])
    for start in range(0, len(frame), 333):
        facts.add(frame.iloc[start:start + 333])
    assert facts.duplicate_rows() == 8 == int(frame.duplicated().sum())
    assert facts.duplicate_rows() == 8


def test_the_compact_test_set_holds_every_value_of_the_test_rows(claims, make_config, monkeypatch):
    from tasks.training import evaluate

    monkeypatch.setattr(evaluate, "FIRST_ROWS", 4)  # every column's array grows many times
    cfg = make_config()
    trained, _ = _trained(claims, cfg)
    spec = trained.feature_spec
    first, rest = claims.iloc[:300].copy(), claims.iloc[300:].copy()
    rest["prior_claims"] = rest["prior_claims"].astype(float)
    rest.loc[rest.index[3], "prior_claims"] = np.nan  # integers first, then floats with a null
    frames = [first, *(rest.iloc[i:i + 77] for i in range(0, len(rest), 77))]
    test = evaluate.compact_test(iter(frames), spec, cfg.slices)
    expected = pd.concat(frames, ignore_index=True)
    assert list(test.columns) == list(dict.fromkeys([*spec.features, spec.target, *cfg.slices]))
    assert len(test) == len(claims) and test["prior_claims"].dtype == np.float64
    for col in test.columns:
        got, want = test[col], expected[col]
        if col in spec.categories:
            assert got.dtype == "category"
            assert got.astype("string").tolist() == want.astype("string").tolist(), col
        else:
            np.testing.assert_array_equal(got.to_numpy(dtype=float), want.to_numpy(dtype=float))
    assert evaluate.compact_test(iter([]), spec, cfg.slices).empty
