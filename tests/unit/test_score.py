"""Batch scoring core: Arrow batches in, predictions out, all or nothing, bounded by batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xgboost as xgb

from tasks.batch.champion import Champion, prepare
from tasks.batch.scoring import score_batches
from tasks.contracts.training import FeatureSpec
from tasks.core.errors import DataError
from tasks.training.synthetic import generate_claims

FEATURES = ["region", "vehicle_type", "claim_channel", "policy_tenure_months", "customer_age",
            "days_to_report", "police_report", "claim_amount", "repair_estimate"]
CATEGORIES = {"region": ["central", "east", "north", "south", "west"],
              "vehicle_type": ["motorcycle", "sedan", "suv", "truck", "van"],
              "claim_channel": ["agent", "online", "phone"]}


@pytest.fixture(scope="module")
def champion() -> Champion:
    spec = FeatureSpec(task="binary", target="is_fraud", features=FEATURES,
                       categories=CATEGORIES, classes=["0", "1"])
    train = generate_claims(3000, seed=1)
    matrix = xgb.DMatrix(spec.matrix(train), label=train["is_fraud"], enable_categorical=True)
    booster = xgb.train({"objective": "binary:logistic", "tree_method": "hist", "max_depth": 3},
                        matrix, 30)
    return Champion(name="fraud", version="7", alias="champion", booster=booster, spec=spec,
                    profile=None, sha256="x")


@pytest.fixture(scope="module")
def claims() -> pd.DataFrame:
    return generate_claims(2500, seed=2)


def reference_scores(champion: Champion, frame: pd.DataFrame) -> np.ndarray:
    """What training and evaluation compute: the DMatrix path through FeatureSpec.matrix."""
    return champion.booster.predict(xgb.DMatrix(champion.spec.matrix(frame),
                                                enable_categorical=True))


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_parquet_to_parquet_matches_the_training_path_in_any_batch_size(champion, claims, tmp_path):
    src = tmp_path / "claims.parquet"
    claims.to_parquet(src)
    small = score_batches(champion, str(src), str(tmp_path / "a.parquet"), batch_rows=700)
    score_batches(champion, str(src), str(tmp_path / "b.parquet"))
    out = pd.read_parquet(tmp_path / "a.parquet")
    assert small.rows == len(out) == 2500
    assert list(out.columns) == ["claim_id", "prediction", "probability", "model_name",
                                 "model_version", "scored_at"]
    assert out["claim_id"].tolist() == claims["claim_id"].tolist()
    np.testing.assert_allclose(out["probability"], reference_scores(champion, claims), rtol=1e-6)
    assert set(out["prediction"].astype(str)) <= {"0", "1"}
    assert (out["model_name"] == "fraud").all() and (out["model_version"] == "7").all()
    assert str(out["scored_at"].dtype) == "datetime64[us, UTC]"
    assert pd.read_parquet(tmp_path / "b.parquet").equals(out.assign(
        scored_at=pd.read_parquet(tmp_path / "b.parquet")["scored_at"]))
    assert small.kept == ["claim_id"]
    assert set(small.ignored) == {"event_date", "vehicle_age", "prior_claims", "hour_of_day",
                                  "witness_count", "impact_speed_kmh", "injury_reported",
                                  "is_fraud", "damage_severity", "settlement_amount"}
    assert 0 < small.distribution["mean probability"] < 1
    assert leftovers(tmp_path) == ["a.parquet", "b.parquet", "claims.parquet"]


def test_csv_in_csv_out_and_keep(champion, claims, tmp_path):
    src = tmp_path / "claims.csv"
    claims.to_csv(src, index=False)
    summary = score_batches(champion, str(src), str(tmp_path / "scores.csv"),
                            keep=["claim_id", "event_date"], batch_rows=1000)
    out = pd.read_csv(tmp_path / "scores.csv")
    assert summary.kept == ["claim_id", "event_date"] and len(out) == 2500
    np.testing.assert_allclose(out["probability"], reference_scores(champion, claims), rtol=1e-5)


def test_unseen_category_is_scored_as_missing(champion, claims):
    frame = claims.head(50).copy()
    frame.loc[:9, "region"] = "atlantis"
    prepared = prepare(pa.RecordBatch.from_pandas(frame, preserve_index=False), champion.spec)
    assert prepared.matrix["region"].isna().sum() == 10
    assert prepared.missing["region"] == 0  # unseen, not missing


def test_missing_feature_is_refused_before_anything_is_written(champion, claims, tmp_path):
    src = tmp_path / "claims.parquet"
    claims.drop(columns=["days_to_report", "police_report"]).to_parquet(src)
    with pytest.raises(DataError, match="lacks feature column.*days_to_report, police_report"):
        score_batches(champion, str(src), str(tmp_path / "out.parquet"))
    assert leftovers(tmp_path) == ["claims.parquet"]


def test_wrong_type_midway_leaves_no_partial_file_and_keeps_the_old_output(champion, claims,
                                                                           tmp_path):
    src = tmp_path / "claims.csv"
    frame = claims.astype({"claim_amount": object})
    frame.loc[2400, "claim_amount"] = "twelve hundred"  # in the last batch of 1000 rows
    frame.to_csv(src, index=False)
    out = tmp_path / "scores.parquet"
    out.write_bytes(b"yesterday's scores")
    with pytest.raises(DataError, match="claim_amount|holds text"):
        score_batches(champion, str(src), str(out), batch_rows=1000)
    assert out.read_bytes() == b"yesterday's scores"
    assert leftovers(tmp_path) == ["claims.csv", "scores.parquet"]


def test_text_column_where_numbers_belong_in_parquet(champion, claims, tmp_path):
    src = tmp_path / "claims.parquet"
    claims.astype({"customer_age": str}).to_parquet(src)
    with pytest.raises(DataError, match="wrong type: feature 'customer_age' must hold numbers"):
        score_batches(champion, str(src), str(tmp_path / "out.parquet"))
    assert leftovers(tmp_path) == ["claims.parquet"]


def test_empty_input_scores_nothing(champion, claims, tmp_path):
    src = tmp_path / "empty.parquet"
    claims.head(0).to_parquet(src)
    with pytest.raises(DataError, match="has no rows"):
        score_batches(champion, str(src), str(tmp_path / "out.parquet"))
    (tmp_path / "blank.csv").write_text("")
    with pytest.raises(DataError, match="no columns"):
        score_batches(champion, str(tmp_path / "blank.csv"), str(tmp_path / "out.parquet"))
    assert leftovers(tmp_path) == ["blank.csv", "empty.parquet"]


def test_bad_locations(champion, claims, tmp_path):
    src = tmp_path / "claims.parquet"
    claims.head(10).to_parquet(src)
    with pytest.raises(DataError, match="does not exist"):
        score_batches(champion, str(tmp_path / "nope.parquet"), str(tmp_path / "o.parquet"))
    with pytest.raises(DataError, match="output must be .parquet, .csv or snowflake"):
        score_batches(champion, str(src), str(tmp_path / "o.xlsx"))
    with pytest.raises(DataError, match="--keep names column.*nope"):
        score_batches(champion, str(src), str(tmp_path / "o.parquet"), keep=["nope"])
    assert pq.read_schema(src).names[0] == "claim_id"
    assert leftovers(tmp_path) == ["claims.parquet"]


def test_prefetch_closes_the_source_when_the_consumer_stops_early():
    import time

    from tasks.adapters.sources import prefetch

    closed = []

    def source():
        try:
            yield from range(100)
        finally:
            closed.append(True)

    reader = prefetch(source())
    assert [next(reader), next(reader)] == [0, 1]
    reader.close()  # the scoring loop failed: stop reading
    deadline = time.monotonic() + 5
    while not closed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert closed == [True]


def test_prefetch_hands_over_a_reader_error():
    from tasks.adapters.sources import prefetch

    def source():
        yield 1
        raise DataError("column x holds text")

    reader = prefetch(source())
    assert next(reader) == 1
    with pytest.raises(DataError, match="holds text"):
        next(reader)


def test_a_column_with_40000_categories_scores_like_training(tmp_path):
    """Category codes used to be int16: a 40,000-category column overflowed in every batch."""
    rng = np.random.default_rng(0)
    codes = [f"P{i:05d}" for i in range(40_000)]
    rows = 3000
    frame = pd.DataFrame({"policy_code": np.array(codes)[rng.integers(0, 40_000, rows)],
                          "x": rng.normal(size=rows).astype("float32")})
    spec = FeatureSpec(task="binary", target="y", features=["policy_code", "x"],
                       categories={"policy_code": codes}, classes=["0", "1"])
    label = (frame["x"] + rng.normal(size=rows) > 0).astype(int)
    booster = xgb.train({"objective": "binary:logistic", "tree_method": "hist", "max_depth": 3},
                        xgb.DMatrix(spec.matrix(frame), label=label, enable_categorical=True), 5)
    batch = pa.RecordBatch.from_pandas(frame.tail(1000).reset_index(drop=True))
    prepared = prepare(batch, spec)
    assert prepared.matrix["policy_code"].cat.codes.max() >= 32_767 or \
        frame["policy_code"].tail(1000).isin(codes[32_767:]).any()
    np.testing.assert_allclose(
        booster.inplace_predict(prepared.matrix),
        booster.predict(xgb.DMatrix(spec.matrix(frame.tail(1000)), enable_categorical=True)),
        rtol=1e-6)


def test_two_scorers_of_one_output_never_share_a_temporary_file(champion, claims, tmp_path):
    """The temporary file used to be `.NAME.partial` for everyone: two runs writing one output
    wrote into each other's file."""
    from tasks.adapters.sinks import Sink

    first, second = Sink(str(tmp_path / "out.parquet")), Sink(str(tmp_path / "out.parquet"))
    assert first.tmp != second.tmp
    table = pa.table({"a": [1, 2]})
    first.write(table)
    second.write(pa.table({"a": [3]}))
    second.commit()
    first.commit()
    assert pd.read_parquet(tmp_path / "out.parquet")["a"].tolist() == [1, 2]
    assert leftovers(tmp_path) == ["out.parquet"]


def test_csv_cells_that_would_run_as_formulas_are_written_as_text(champion, claims, tmp_path):
    """OWASP CSV injection: text starting with = + - @ tab or CR gets a leading '; numbers,
    other text and Parquet are untouched."""
    src = tmp_path / "claims.csv"
    risky = ["=HYPERLINK(\"http://x\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)", "\tx"]
    frame = claims.head(len(risky) + 3).copy()
    frame["claim_id"] = [*risky, "-3.5", "ok", "1e5"]
    frame.to_csv(src, index=False)
    score_batches(champion, str(src), str(tmp_path / "scores.csv"), keep=["claim_id"])
    score_batches(champion, str(src), str(tmp_path / "scores.parquet"), keep=["claim_id"])
    written = pd.read_csv(tmp_path / "scores.csv", dtype={"claim_id": str})
    assert written["claim_id"].tolist() == [*("'" + r for r in risky), "-3.5", "ok", "1e5"]
    assert (written["probability"] > 0).all() and written["probability"].dtype == float
    kept = pd.read_parquet(tmp_path / "scores.parquet")["claim_id"].tolist()
    assert kept == frame["claim_id"].tolist()


def test_csv_neutralises_text_cells_and_names_never_numbers(tmp_path):
    from tasks.adapters.sinks import write_frame

    frame = pd.DataFrame({"amount": [-3.5, 2.0], "note": ["-x", "\r=1"], "=name": [1, 2]})
    write_frame(frame, tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_bytes().split(b"\n") == [
        b'"amount","note","\'=name"', b'-3.5,"\'-x",1', b'2,"\'\r=1",2', b""]
