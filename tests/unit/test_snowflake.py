"""The Snowflake source against fakesnow's server: the real connector, real Arrow batches."""

import re
from datetime import UTC, datetime, timedelta

import pytest

from tasks.core.config import DataSpec
from tasks.core.errors import ConfigError, DataError
from tasks.core.settings import Settings, SnowflakeSettings
from tasks.training.data import load_dataset
from tasks.training.synthetic import generate_claims


@pytest.fixture(scope="module")
def snow():
    fakesnow = pytest.importorskip("fakesnow")
    import snowflake.connector

    with fakesnow.server() as kwargs:
        env = {"SNOWFLAKE_HOST": kwargs["host"], "SNOWFLAKE_PORT": str(kwargs["port"]),
               "SNOWFLAKE_PROTOCOL": kwargs.get("protocol", "http"),
               "SNOWFLAKE_ACCOUNT": "fakesnow", "SNOWFLAKE_USER": "svc_ml",
               "SNOWFLAKE_PASSWORD": "s3cret-Pa55", "SNOWFLAKE_DATABASE": "CLAIMS_DB",
               "SNOWFLAKE_SCHEMA": "PUBLIC"}
        conn = snowflake.connector.connect(**kwargs, database="CLAIMS_DB", schema="PUBLIC")
        cur = conn.cursor()
        cur.execute("create database if not exists CLAIMS_DB")
        cur.execute("create schema if not exists CLAIMS_DB.PUBLIC")
        cur.execute("use schema CLAIMS_DB.PUBLIC")
        frame = generate_claims(300).drop(columns=["event_date"])
        cur.execute("create table claims (" + ", ".join(
            f"{c} {'varchar' if frame[c].dtype == object else 'double'}" for c in frame) + ")")
        rows = [tuple(r) for r in frame.itertuples(index=False)]
        cur.executemany(
            f"insert into claims values ({', '.join(['%s'] * frame.shape[1])})", rows)
        yield Settings.from_env(env).snowflake


def test_query_reads_arrow_batches_with_lowercase_columns(snow):
    ds = load_dataset(DataSpec(source="snowflake", query="select * from claims"), snowflake_settings=snow)
    assert len(ds.frame) == 300 and "is_fraud" in ds.frame.columns
    again = load_dataset(DataSpec(source="snowflake", query="select * from claims"), snowflake_settings=snow)
    assert ds.fingerprint == again.fingerprint
    other = load_dataset(DataSpec(source="snowflake", query="select * from claims limit 10"),
                         snowflake_settings=snow)
    assert other.fingerprint != ds.fingerprint


def test_bad_query_is_a_data_error_without_the_password(snow):
    with pytest.raises(DataError) as info:
        load_dataset(DataSpec(source="snowflake", query="select * from no_such_table"),
                     snowflake_settings=snow)
    assert "s3cret-Pa55" not in str(info.value)


def test_missing_credentials_is_a_config_error(monkeypatch):
    for key in ("SNOWFLAKE_ACCOUNT", "SNOWFLAKE_HOST", "MLOPS_SNOWFLAKE_BLOCK"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError, match="SNOWFLAKE_ACCOUNT"):
        load_dataset(DataSpec(source="snowflake", query="select 1"))



# what fakesnow's in-process patch connects with (its connect() ignores where)
PATCHED = SnowflakeSettings({"account": "fakesnow", "user": "svc_ml", "password": "s3cret-Pa55",
                             "database": "CLAIMS_DB", "schema": "PUBLIC"})


@pytest.fixture
def fake_snowflake():
    """fakesnow in-process: the connector's connect() and write_pandas() patched onto DuckDB
    (its server mode lacks stages, which write_pandas needs)."""
    fakesnow = pytest.importorskip("fakesnow")
    import snowflake.connector

    with fakesnow.patch():
        conn = snowflake.connector.connect(database="CLAIMS_DB", schema="PUBLIC")
        conn.cursor().execute("create database if not exists CLAIMS_DB")
        conn.cursor().execute("create schema if not exists CLAIMS_DB.PUBLIC")
        conn.cursor().execute("use schema CLAIMS_DB.PUBLIC")
        frame = generate_claims(300).drop(columns=["event_date"])
        conn.cursor().execute("create table claims (" + ", ".join(
            f"{c} {'varchar' if frame[c].dtype == object else 'double'}" for c in frame) + ")")
        conn.cursor().executemany(
            f"insert into claims values ({', '.join(['%s'] * frame.shape[1])})",
            [tuple(r) for r in frame.itertuples(index=False)])
        yield conn


def test_scoring_streams_a_query_in_arrow_batches(snow, tmp_path):
    import pandas as pd

    from tasks.batch.scoring import score_batches
    from tests.unit.test_score import champion as make_champion

    champ = make_champion.__wrapped__()
    summary = score_batches(champ, "snowflake:select * from claims", str(tmp_path / "s.parquet"),
                            batch_rows=128, snowflake_settings=snow)
    out = pd.read_parquet(tmp_path / "s.parquet")
    assert summary.rows == len(out) == 300 and summary.kept == ["claim_id"]
    assert out["claim_id"].is_unique
    with pytest.raises(DataError, match="lacks feature column"):
        score_batches(champ, "snowflake:select claim_id, region from claims",
                      str(tmp_path / "t.parquet"), snowflake_settings=snow)
    with pytest.raises(DataError, match="Snowflake rejected the query"):
        score_batches(champ, "snowflake:select * from nowhere", str(tmp_path / "t.parquet"),
                      snowflake_settings=snow)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.parquet"]


def test_scoring_bulk_writes_a_table_all_or_nothing(fake_snowflake, tmp_path):
    from tasks.batch.scoring import score_batches
    from tests.unit.test_score import champion as make_champion

    champ = make_champion.__wrapped__()
    src = tmp_path / "claims.parquet"
    generate_claims(300, seed=4).to_parquet(src)
    summary = score_batches(champ, str(src), "snowflake:fraud_scores", batch_rows=128,
                            snowflake_settings=PATCHED)
    assert summary.rows == 300
    cur = fake_snowflake.cursor()
    cur.execute("select count(*), count(distinct claim_id), min(probability), "
                "max(model_version) from fraud_scores")
    count, ids, low, version = cur.fetchone()
    assert (count, ids, version) == (300, 300, "7") and 0 <= low <= 1
    cur.execute("select count(*) from information_schema.tables "
                "where table_name like 'MLOPS_STAGING_%'")
    assert cur.fetchone()[0] == 0

    bad = tmp_path / "bad.csv"
    frame = generate_claims(300, seed=5).astype({"claim_amount": object})
    frame.loc[250, "claim_amount"] = "twelve"
    frame.to_csv(bad, index=False)
    with pytest.raises(DataError, match="claim_amount|holds text"):
        score_batches(champ, str(bad), "snowflake:fraud_scores_2", batch_rows=100, snowflake_settings=PATCHED)
    with pytest.raises(DataError, match="Snowflake output must be a table name"):
        score_batches(champ, str(src), "snowflake:x; drop table claims", snowflake_settings=PATCHED)
    cur.execute("select count(*) from information_schema.tables "
                "where table_name in ('FRAUD_SCORES_2', 'X') or table_name like 'MLOPS_STAGING_%'")
    assert cur.fetchone()[0] == 0
    cur.execute("select count(*) from claims")
    assert cur.fetchone()[0] == 300


def test_inputs_are_single_read_only_queries():
    """`snowflake:<query>` used to run any statement: a DELETE included."""
    from tasks.adapters.snowflake import read_only_query

    assert read_only_query(" select * from claims; ") == "select * from claims"
    assert read_only_query("WITH t AS (SELECT 1 AS updated_at) SELECT * FROM t") \
        .startswith("WITH")
    assert read_only_query("select 'drop table x; delete' as note from claims") \
        .startswith("select")
    for bad in ("delete from claims", "select 1; drop table claims", "update claims set a=1",
                "-- comment\ntruncate table claims", "with x as (select 1) delete from claims",
                "call cleanup()", ""):
        with pytest.raises(DataError, match="single read-only query"):
            read_only_query(bad)


def test_a_delete_is_refused_before_connecting(snow, tmp_path):
    from tasks.batch.scoring import score_batches
    from tests.unit.test_score import champion as make_champion

    with pytest.raises(DataError, match="single read-only query"):
        load_dataset(DataSpec(source="snowflake", query="delete from claims"), snowflake_settings=snow)
    with pytest.raises(DataError, match="single read-only query"):
        score_batches(make_champion.__wrapped__(), "snowflake:delete from claims",
                      str(tmp_path / "s.parquet"), snowflake_settings=snow)
    again = load_dataset(DataSpec(source="snowflake", query="select count(*) as n from claims"),
                         snowflake_settings=snow)
    assert again.frame["n"].iloc[0] == 300


def test_output_columns_land_by_name_in_a_table_of_another_order(fake_snowflake, tmp_path):
    """`insert into T select * from staging` matched columns by position: a target whose columns
    were in another order silently got values in the wrong columns."""
    from tasks.batch.scoring import score_batches
    from tests.unit.test_score import champion as make_champion

    cur = fake_snowflake.cursor()
    cur.execute("create table reordered (scored_at timestamp_tz, model_version varchar, "
                "model_name varchar, probability double, prediction varchar, claim_id varchar)")
    src = tmp_path / "claims.parquet"
    generate_claims(50, seed=6).to_parquet(src)
    score_batches(make_champion.__wrapped__(), str(src), "snowflake:reordered", snowflake_settings=PATCHED)
    cur.execute("select count(*), min(probability), max(probability), min(model_name), "
                "min(model_version), min(claim_id) from reordered")
    count, low, high, name, version, claim = cur.fetchone()
    assert (count, name, version) == (50, "fraud", "7") and 0 <= low <= high <= 1
    assert claim.startswith("C")


def test_a_query_streams_as_a_training_table(snow):
    import pandas as pd

    from tasks.core.config import TrainingSpec
    from tasks.training.batches import TEST
    from tasks.training.data import open_table

    spec = DataSpec(source="snowflake", query="select * from claims", key="claim_id")
    data = open_table(spec, TrainingSpec(), batch_rows=64, snowflake_settings=snow)
    frames = list(data.table.frames())
    assert sum(len(f) for f in frames) == 300 and max(len(f) for f in frames) <= 64
    assert "is_fraud" in frames[0].columns  # lower-cased as the in-memory reader does
    whole = load_dataset(spec, snowflake_settings=snow).frame
    assert pd.concat(frames, ignore_index=True).claim_id.tolist() == whole.claim_id.tolist()
    test = pd.concat(list(data.table.frames(TEST)))
    assert 30 < len(test) < 90  # about a fifth, hashed per claim
    assert open_table(spec, TrainingSpec(), batch_rows=64,
                      snowflake_settings=snow).fingerprint == data.fingerprint


class _TimeTravelSnowflake:
    """A connector double keeping each version of one table with the time it was written:
    `AT(TIMESTAMP => '…'::timestamp_tz)` reads the version of that moment, as Snowflake's Time
    Travel does, else the newest. Only what query_batches calls: connect(), cursor(),
    execute(query, num_statements=…), description, fetch_arrow_batches(), close()."""

    AT = re.compile(r"AT\(TIMESTAMP => '([^']+)'::timestamp_tz\)")

    def __init__(self, frame):
        import pyarrow as pa

        self.versions = [(datetime.now(UTC) - timedelta(hours=1),
                          pa.Table.from_pandas(frame, preserve_index=False))]
        self.queries: list[str] = []

    def write(self, frame) -> None:
        import pyarrow as pa

        self.versions.append((datetime.now(UTC),
                              pa.Table.from_pandas(frame, preserve_index=False)))

    def connect(self, **params):
        return _FakeConnection(self)


class _FakeConnection:
    def __init__(self, db: _TimeTravelSnowflake):
        self.db = db

    def cursor(self):
        return _FakeCursor(self.db)

    def close(self) -> None:
        pass


class _FakeCursor:
    def __init__(self, db: _TimeTravelSnowflake):
        self.db, self.table = db, None

    def execute(self, query: str, num_statements: int = 0):
        from types import SimpleNamespace

        self.db.queries.append(query)
        found = self.db.AT.search(query)
        moment = datetime.fromisoformat(found.group(1)) if found else datetime.now(UTC)
        self.table = [t for written, t in self.db.versions if written <= moment][-1]
        self.description = [SimpleNamespace(name=n.upper()) for n in self.table.column_names]
        return self

    def fetch_arrow_batches(self):
        table = self.table.rename_columns([n.upper() for n in self.table.column_names])
        yield from (table.slice(i, 100) for i in range(0, table.num_rows, 100))


@pytest.mark.parametrize("query", ["select * from claims {at}", "select * from claims"])
def test_every_pass_of_a_streamed_query_reads_the_same_rows(monkeypatch, caplog, query):
    import pandas as pd
    import snowflake.connector

    from tasks.core.config import TrainingSpec
    from tasks.training.data import open_table

    fake = _TimeTravelSnowflake(generate_claims(300).drop(columns=["event_date"]))
    monkeypatch.setattr(snowflake.connector, "connect", fake.connect)
    settings = SnowflakeSettings(variables={"account": "fake", "user": "svc_ml",
                                            "password": "s3cret-Pa55"})
    data = open_table(DataSpec(source="snowflake", query=query, key="claim_id"), TrainingSpec(),
                      batch_rows=64, snowflake_settings=settings)
    first = pd.concat(list(data.table.frames()), ignore_index=True)
    fake.write(generate_claims(350, seed=9).drop(columns=["event_date"]))  # rows change
    second = pd.concat(list(data.table.frames()), ignore_index=True)
    if "{at}" in query:
        assert data.at is not None and len(set(fake.queries)) == 1
        assert all(f"AT(TIMESTAMP => '{datetime.fromisoformat(data.at).isoformat()}'" in q
                   for q in fake.queries)
        pd.testing.assert_frame_equal(first, second)
    else:  # without the placeholder each pass reads what is there now
        assert data.at is None and (len(first), len(second)) == (300, 350)
        assert "run again for each pass" in caplog.text
