"""The only code that talks to Snowflake: a query read as Arrow batches, credentials never logged."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pyarrow as pa

from tasks.core.errors import ConfigError, DataError

_ENV_KEYS = {
    "account": "SNOWFLAKE_ACCOUNT",
    "user": "SNOWFLAKE_USER",
    "password": "SNOWFLAKE_PASSWORD",
    "warehouse": "SNOWFLAKE_WAREHOUSE",
    "database": "SNOWFLAKE_DATABASE",
    "schema": "SNOWFLAKE_SCHEMA",
    "role": "SNOWFLAKE_ROLE",
    "host": "SNOWFLAKE_HOST",
    "port": "SNOWFLAKE_PORT",
    "protocol": "SNOWFLAKE_PROTOCOL",
}


def connection_params() -> dict[str, Any]:
    """Connection settings from SNOWFLAKE_* variables, or from a Prefect Secret block holding JSON."""
    block = os.environ.get("MLOPS_SNOWFLAKE_BLOCK")
    if block:
        from prefect.blocks.system import Secret

        params = dict(Secret.load(block).get())
    else:
        params = {key: os.environ[env] for key, env in _ENV_KEYS.items() if os.environ.get(env)}
    if "port" in params:
        params["port"] = int(params["port"])
    if "account" not in params and "host" not in params:
        raise ConfigError(
            "Snowflake source needs SNOWFLAKE_ACCOUNT (and SNOWFLAKE_USER, SNOWFLAKE_PASSWORD) "
            "or MLOPS_SNOWFLAKE_BLOCK naming a Secret block"
        )
    return params


def read_query(query: str) -> tuple[pd.DataFrame, str]:
    """Run the query and stream its Arrow batches; the fingerprint hashes the batches as they come."""
    import snowflake.connector

    params = connection_params()
    digest = hashlib.sha256(query.encode())
    batches: list[pa.RecordBatch] = []
    try:
        with snowflake.connector.connect(**params) as conn, conn.cursor() as cur:
            cur.execute(query)
            for table in cur.fetch_arrow_batches():
                for batch in table.to_batches():
                    digest.update(batch.serialize())
                    batches.append(batch)
    except snowflake.connector.errors.ProgrammingError as exc:
        raise DataError(f"Snowflake rejected the query: {exc.msg}") from None
    except snowflake.connector.errors.DatabaseError as exc:
        # DatabaseError covers login failures; its message never contains the password
        raise DataError(f"cannot connect to Snowflake: {exc.msg}") from None
    if not batches:
        return pd.DataFrame(), digest.hexdigest()
    frame = pa.Table.from_batches(batches).to_pandas()
    # unquoted Snowflake identifiers come back upper-case; model configs use lower-case names
    frame.columns = [c.lower() for c in frame.columns]
    return frame, digest.hexdigest()


def _snowflake_errors(action: str):
    import contextlib

    import snowflake.connector

    @contextlib.contextmanager
    def guard():
        try:
            yield
        except snowflake.connector.errors.ProgrammingError as exc:
            raise DataError(f"Snowflake rejected {action}: {exc.msg}") from None
        except snowflake.connector.errors.DatabaseError as exc:
            raise DataError(f"cannot connect to Snowflake: {exc.msg}") from None

    return guard()


def query_batches(query: str, batch_rows: int) -> tuple[list[str], Iterator[pa.RecordBatch]]:
    """Run the query; its (lower-cased) column names now, its rows as Arrow batches on demand.
    The connection stays open until the batches are consumed or the iterator is closed."""
    import snowflake.connector

    with _snowflake_errors("the query"):
        conn = snowflake.connector.connect(**connection_params())
        cur = conn.cursor()
        try:
            cur.execute(query)
        except BaseException:
            conn.close()
            raise
    columns = [d.name.lower() for d in cur.description]

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            with _snowflake_errors("the query"):
                for table in cur.fetch_arrow_batches():
                    table = table.rename_columns([c.lower() for c in table.column_names])
                    yield from table.to_batches(max_chunksize=batch_rows)
        finally:
            conn.close()

    return columns, batches()


def _snowflake_type(kind: pa.DataType) -> str:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_timestamp(kind):
        return "timestamp_tz" if kind.tz else "timestamp_ntz"
    for check, name in ((pa.types.is_boolean, "boolean"), (pa.types.is_integer, "number(38,0)"),
                        (pa.types.is_floating, "double"), (pa.types.is_date, "date")):
        if check(kind):
            return name
    return "varchar"


class TableWriter:
    """Predictions into a Snowflake table, all or nothing: batches go to a staging table through
    the connector's bulk write (write_pandas), then one INSERT … SELECT moves them."""

    def __init__(self, table: str):
        import re
        import uuid

        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*){0,2}", table):
            raise DataError(f"Snowflake output must be a table name, got {table!r}")
        self.table = table.upper()
        self.staging = f"MLOPS_STAGING_{uuid.uuid4().hex[:12].upper()}"
        self._conn = None

    def write(self, table: pa.Table) -> None:
        import snowflake.connector
        from snowflake.connector.pandas_tools import write_pandas

        with _snowflake_errors(f"writing {self.table}"):
            if self._conn is None:
                self._conn = snowflake.connector.connect(**connection_params())
                columns = ", ".join(f"{f.name.upper()} {_snowflake_type(f.type)}"
                                    for f in table.schema)
                self._conn.cursor().execute(f"create transient table {self.staging} ({columns})")
            frame = table.to_pandas()
            frame.columns = [c.upper() for c in frame.columns]
            for col in frame.select_dtypes("category"):
                frame[col] = frame[col].astype(str)
            write_pandas(self._conn, frame, self.staging, use_logical_type=True)

    def commit(self) -> None:
        with _snowflake_errors(f"writing {self.table}"):
            cur = self._conn.cursor()
            cur.execute(f"create table if not exists {self.table} like {self.staging}")
            cur.execute(f"insert into {self.table} select * from {self.staging}")
        self.abort()

    def abort(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.cursor().execute(f"drop table if exists {self.staging}")
        finally:
            self._conn.close()
            self._conn = None
