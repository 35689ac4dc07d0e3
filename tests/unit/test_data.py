import numpy as np
import pandas as pd
import pytest

from tasks.adapters.sinks import write_frame
from tasks.adapters.sources import read_frame as read_file
from tasks.core.config import DataSpec
from tasks.core.errors import DataError
from tasks.training.data import load_dataset
from tasks.training.synthetic import generate_claims


def test_generator_is_deterministic():
    a, b = generate_claims(500, seed=11), generate_claims(500, seed=11)
    pd.testing.assert_frame_equal(a, b)
    assert not generate_claims(500, seed=12).equals(a)


def test_generator_targets_are_plausible():
    df = generate_claims(20000)
    assert 0.03 < df.is_fraud.mean() < 0.08
    assert set(df.damage_severity) == {"minor", "moderate", "severe", "total_loss"}
    assert (df.settlement_amount > 0).all()
    assert pd.api.types.is_datetime64_any_dtype(df.event_date)


def test_fraud_has_real_signal():
    df = generate_claims(20000)
    late = df.days_to_report > 10
    assert df.is_fraud[late].mean() > 2 * df.is_fraud[~late].mean()


def test_drift_moves_inputs_not_ids():
    ref, drifted = generate_claims(20000), generate_claims(20000, drift=1.0)
    assert drifted.claim_amount.median() > 1.3 * ref.claim_amount.median()
    assert (drifted.region == "south").mean() > (ref.region == "south").mean() + 0.1
    assert list(ref.columns) == list(drifted.columns)


def test_synthetic_fingerprint_depends_on_spec_only():
    a = load_dataset(DataSpec(source="synthetic", rows=100))
    b = load_dataset(DataSpec(source="synthetic", rows=100))
    c = load_dataset(DataSpec(source="synthetic", rows=100, drift=0.5))
    assert a.fingerprint == b.fingerprint != c.fingerprint


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_file_round_trip_and_fingerprint(tmp_path, suffix):
    path = tmp_path / f"claims{suffix}"
    write_frame(generate_claims(200), path)
    ds = load_dataset(DataSpec(source="file", path=str(path)))
    assert len(ds.frame) == 200 and "is_fraud" in ds.frame
    assert pd.api.types.is_datetime64_any_dtype(ds.frame.event_date)
    assert ds.fingerprint == load_dataset(DataSpec(source="file", path=str(path))).fingerprint
    assert not list(tmp_path.glob(".*tmp"))


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_file(str(tmp_path / "nope.csv"))


def test_duplicate_csv_header_is_named(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("a,b,a\n1,2,3\n")
    with pytest.raises(DataError, match="duplicate column name 'a'"):
        read_file(str(path))


def test_write_frame_rejects_unknown_extension(tmp_path):
    with pytest.raises(DataError, match="output must be .parquet, .csv"):
        write_frame(pd.DataFrame({"a": [1]}), tmp_path / "x.json")
    assert list(tmp_path.iterdir()) == []


def test_generate_rejects_zero_rows():
    with pytest.raises(DataError):
        generate_claims(0)


def test_fsspec_url(tmp_path):
    path = tmp_path / "c.csv"
    write_frame(generate_claims(50), path)
    frame = read_file(f"file://{path}")
    assert len(frame) == 50 and np.isfinite(frame.claim_amount).all()


def test_as_of_keeps_rows_up_to_that_day_and_changes_the_fingerprint():
    from datetime import date

    from tasks.core.config import DataSpec
    from tasks.training.data import load_dataset

    spec = DataSpec(source="synthetic", rows=2000)
    full = load_dataset(spec)
    cut = load_dataset(spec, as_of=date(2024, 12, 31))
    assert 0 < len(cut.frame) < len(full.frame)
    assert cut.frame["event_date"].max() <= pd.Timestamp("2024-12-31 23:59:59")
    assert (full.frame["event_date"] <= pd.Timestamp("2024-12-31 23:59:59")).sum() == len(cut.frame)
    assert cut.fingerprint != full.fingerprint
    assert load_dataset(spec, as_of=date(2024, 12, 31)).fingerprint == cut.fingerprint
    with pytest.raises(DataError, match="needs the date column 'booked_on'"):
        load_dataset(DataSpec(source="synthetic", rows=100, date_column="booked_on"),
                     as_of=date(2024, 1, 1))
