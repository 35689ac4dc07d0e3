"""The Snowflake source against fakesnow's server: the real connector, real Arrow batches."""

import pytest

from tasks.config import DataSpec
from tasks.data import generate_claims, load_dataset
from tasks.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def snowflake_env():
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
        yield env


def test_query_reads_arrow_batches_with_lowercase_columns(snowflake_env, monkeypatch):
    for key, value in snowflake_env.items():
        monkeypatch.setenv(key, value)
    ds = load_dataset(DataSpec(source="snowflake", query="select * from claims"))
    assert len(ds.frame) == 300 and "is_fraud" in ds.frame.columns
    again = load_dataset(DataSpec(source="snowflake", query="select * from claims"))
    assert ds.fingerprint == again.fingerprint
    other = load_dataset(DataSpec(source="snowflake", query="select * from claims limit 10"))
    assert other.fingerprint != ds.fingerprint


def test_bad_query_is_a_data_error_without_the_password(snowflake_env, monkeypatch):
    for key, value in snowflake_env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(DataError) as info:
        load_dataset(DataSpec(source="snowflake", query="select * from no_such_table"))
    assert "s3cret-Pa55" not in str(info.value)


def test_missing_credentials_is_a_config_error(monkeypatch):
    for key in ("SNOWFLAKE_ACCOUNT", "SNOWFLAKE_HOST", "MLOPS_SNOWFLAKE_BLOCK"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError, match="SNOWFLAKE_ACCOUNT"):
        load_dataset(DataSpec(source="snowflake", query="select 1"))
