"""The only code that talks to Snowflake: read-only queries as Arrow batches, predictions into a
table all or nothing; credentials come in as parameters and are never logged."""

from __future__ import annotations

import contextlib
import hashlib
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pandas as pd
import pyarrow as pa

from tasks.core.errors import DataError

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*){0,2}")
_WRITES = re.compile(r"\b(insert|update|delete|merge|truncate|drop|create|alter|grant|revoke|"
                     r"call|copy|put|remove|undrop|use|execute|begin|commit|rollback|set|unset)\b",
                     re.IGNORECASE)


def read_only_query(query: str) -> str:
    """The query when it is one SELECT (or WITH … SELECT) statement; else a DataError. Inputs
    are read, never changed: a DELETE or a second statement is refused before connecting."""
    text = re.sub(r"--[^\n]*|/\*.*?\*/", " ", query, flags=re.S)
    bare = re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"", "''", text).strip().rstrip(";").strip()
    first = bare.split(None, 1)[0].lower() if bare else ""
    if first not in ("select", "with") or ";" in bare or _WRITES.search(bare):
        raise DataError("a Snowflake input must be a single read-only query (SELECT … or "
                        "WITH … SELECT …); nothing was run")
    return query.strip().rstrip(";")


AT_PLACEHOLDER = "{at}"


def time_travel(query: str, at: str) -> str:
    """The query with each `{at}` (written after a table name) replaced by a time-travel clause
    at an ISO timestamp, so the same rows can be read again later (within the table's Time
    Travel retention)."""
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        raise DataError(f"time-travel point {at!r} is not an ISO timestamp") from None
    if moment.tzinfo is None:
        raise DataError(f"time-travel point {at!r} has no time zone")
    return query.replace(AT_PLACEHOLDER, f"AT(TIMESTAMP => '{moment.isoformat()}'::timestamp_tz)")


def quote(identifier: str) -> str:
    """A column name as a quoted Snowflake identifier (upper-case, as unquoted names resolve)."""
    return '"' + identifier.upper().replace('"', '""') + '"'


@contextlib.contextmanager
def _errors(action: str):
    import snowflake.connector

    try:
        yield
    except snowflake.connector.errors.ProgrammingError as exc:
        raise DataError(f"Snowflake rejected {action}: {exc.msg}") from None
    except snowflake.connector.errors.DatabaseError as exc:
        # DatabaseError covers login failures; its message never contains the password
        raise DataError(f"cannot connect to Snowflake: {exc.msg}") from None


def read_query(query: str, params: Mapping[str, Any]) -> tuple[pd.DataFrame, str]:
    """Run the query and collect its Arrow batches; the fingerprint hashes them as they come."""
    import snowflake.connector

    query = read_only_query(query)
    digest = hashlib.sha256(query.encode())
    batches: list[pa.RecordBatch] = []
    with _errors("the query"), snowflake.connector.connect(**params) as conn, \
            conn.cursor() as cur:
        cur.execute(query, num_statements=1)
        for table in cur.fetch_arrow_batches():
            for batch in table.to_batches():
                digest.update(batch.serialize())
                batches.append(batch)
    if not batches:
        return pd.DataFrame(), digest.hexdigest()
    frame = pa.Table.from_batches(batches).to_pandas()
    # unquoted Snowflake identifiers come back upper-case; model configs use lower-case names
    frame.columns = [c.lower() for c in frame.columns]
    return frame, digest.hexdigest()


def query_batches(query: str, batch_rows: int, params: Mapping[str, Any]
                  ) -> tuple[list[str], Iterator[pa.RecordBatch]]:
    """Run the query; its (lower-cased) column names now, its rows as Arrow batches on demand.
    The connection stays open until the batches are consumed or the iterator is closed."""
    import snowflake.connector

    query = read_only_query(query)
    with _errors("the query"):
        conn = snowflake.connector.connect(**params)
        cur = conn.cursor()
        try:
            cur.execute(query, num_statements=1)
        except BaseException:
            conn.close()
            raise
    columns = [d.name.lower() for d in cur.description]

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            with _errors("the query"):
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
    the connector's bulk write (write_pandas), then one INSERT … SELECT naming the columns moves
    them, so a target whose columns are in another order still gets each value in its column."""

    def __init__(self, table: str, params: Mapping[str, Any]):
        if not _TABLE.fullmatch(table):
            raise DataError(f"Snowflake output must be a table name, got {table!r}")
        self.table = table.upper()
        self.staging = f"MLOPS_STAGING_{uuid.uuid4().hex[:12].upper()}"
        self.params = params
        self.columns: list[str] = []
        self._conn: Any = None  # a SnowflakeConnection once the first batch arrives

    def write(self, table: pa.Table) -> None:
        import snowflake.connector
        from snowflake.connector.pandas_tools import write_pandas

        with _errors(f"writing {self.table}"):
            if self._conn is None:
                self._conn = snowflake.connector.connect(**self.params)
                self.columns = [f.name.upper() for f in table.schema]
                ddl = ", ".join(f"{quote(f.name)} {_snowflake_type(f.type)}"
                                for f in table.schema)
                self._conn.cursor().execute(f"create transient table {self.staging} ({ddl})")
            frame = table.to_pandas()
            frame.columns = [c.upper() for c in frame.columns]
            for col in frame.select_dtypes("category"):
                frame[col] = frame[col].astype(str)
            write_pandas(self._conn, frame, self.staging, quote_identifiers=True,
                         use_logical_type=True)

    def commit(self) -> None:
        names = ", ".join(quote(c) for c in self.columns)
        with _errors(f"writing {self.table}"):
            cur = self._conn.cursor()
            cur.execute(f"create table if not exists {self.table} like {self.staging}")
            cur.execute(f"insert into {self.table} ({names}) select {names} from {self.staging}")
        self.abort()

    def abort(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.cursor().execute(f"drop table if exists {self.staging}")
        finally:
            self._conn.close()
            self._conn = None
