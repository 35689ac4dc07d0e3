"""Writing data, all or nothing: files (.parquet or .csv) go to a hidden temporary file unique to
the writer and replace the target only on commit; Snowflake tables through a staging table.
CSV cells that a spreadsheet would run as a formula are written as text (OWASP)."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tasks.adapters.locations import SNOWFLAKE, file_format
from tasks.adapters.snowflake import TableWriter
from tasks.core.credentials import reveal
from tasks.core.errors import DataError
from tasks.core.redact import redact
from tasks.core.settings import SnowflakeSettings, data_urls


class Sink:
    """Tables written batch by batch to a temporary target that replaces the real one only on
    commit; abort (any failure) leaves the previous output untouched and nothing behind. Two
    writers of one output never share a temporary file."""

    def __init__(self, location: str, snowflake_settings: SnowflakeSettings | None = None):
        self.location = redact(location)  # what messages name
        location = reveal(location, data_urls)
        self._writer: Any = None  # a pyarrow CSVWriter or ParquetWriter from the first batch
        self._table: TableWriter | None = None
        if location.startswith(SNOWFLAKE):
            params = (snowflake_settings or SnowflakeSettings()).connection()
            self._table = TableWriter(location.removeprefix(SNOWFLAKE).strip(), params)
            return
        self.csv = file_format(self.location, role="output") == "csv"
        self.path = Path(location)
        if self.path.is_dir():
            raise DataError(f"output {self.location} is a directory")
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
                                       ".partial")

    def write(self, table: pa.Table) -> None:
        if self._table is not None:
            self._table.write(table)
            return
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.csv:
                import pyarrow.csv as pcsv

                self._writer = pcsv.CSVWriter(self.tmp, _as_text(table).schema)
            else:
                import pyarrow.parquet as pq

                # dictionary encoding only where values repeat: trying it on unique ids costs
                # more than the whole prediction write
                encoded = [f.name for f in table.schema if pa.types.is_dictionary(f.type)]
                self._writer = pq.ParquetWriter(self.tmp, table.schema, use_dictionary=encoded)
        self._writer.write_table(_as_text(table) if self.csv else table)

    def commit(self) -> None:
        if self._table is not None:
            self._table.commit()
            return
        if self._writer is None:
            raise DataError(f"nothing was written to {self.location}")
        self._writer.close()
        self.tmp.replace(self.path)

    def abort(self) -> None:
        if self._table is not None:
            self._table.abort()
            return
        if self._writer is not None:
            with contextlib.suppress(Exception):  # the partial file goes anyway
                self._writer.close()
        self.tmp.unlink(missing_ok=True)


def _plain(schema: pa.Schema) -> pa.Schema:
    """CSV cannot hold dictionaries: their values instead."""
    return pa.schema([pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type)
                      else f for f in schema])


# a cell starting with one of these is a formula to a spreadsheet (OWASP: CSV injection)
FORMULA_START = pa.array(["=", "+", "-", "@", "\t", "\r"])
NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"  # -3.5 in a text column stays a number


def neutralise(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Text cells a spreadsheet would run as a formula get a leading ' (shown, not run)."""
    risky = pc.is_in(pc.utf8_slice_codeunits(values, 0, 1), value_set=FORMULA_START)
    if not pc.any(risky).as_py():  # the usual case, at a fraction of a regex's cost
        return values
    risky = pc.and_kleene(risky, pc.invert(pc.match_substring_regex(values, NUMBER)))
    return pc.if_else(risky, pc.binary_join_element_wise("'", values, ""), values)


def _as_text(table: pa.Table) -> pa.Table:
    """The table as CSV holds it: dictionaries as their values, text cells (and column names)
    that would run as formulas neutralised; numbers untouched."""
    table = table.cast(_plain(table.schema))
    columns = [neutralise(c) if pa.types.is_string(c.type) or pa.types.is_large_string(c.type)
               else c for c in table.columns]
    names = neutralise(pa.array(table.column_names, pa.string())).to_pylist()
    return pa.Table.from_arrays(columns, names=names)


def write_frame(frame: pd.DataFrame, location: str | Path) -> None:
    """A DataFrame to .csv or .parquet, atomically (the same rules as every other output)."""
    sink = Sink(str(location))
    try:
        sink.write(pa.Table.from_pandas(frame, preserve_index=False))
        sink.commit()
    except BaseException:
        sink.abort()
        raise
