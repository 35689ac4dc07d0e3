"""Training data: the configured source (synthetic, file, a folder of Parquet files or Snowflake)
as one DataFrame, or as a table streamed in batches when it is large, with a fingerprint, up to
an as-of date for backfills."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd

from tasks.adapters import snowflake
from tasks.adapters.sources import read_frame
from tasks.core.config import DataSpec, TrainingSpec
from tasks.core.credentials import revealed
from tasks.core.errors import DataError
from tasks.core.redact import redact
from tasks.core.settings import SnowflakeSettings, data_urls
from tasks.core.steps import NETWORK_RETRIES, step
from tasks.training import batches
from tasks.training.batches import BatchTable
from tasks.training.fingerprint import as_of_fingerprint, file_path, source_fingerprint
from tasks.training.synthetic import generate_claims

QueryReader = Callable[[str], tuple[pd.DataFrame, str]]


@dataclass(frozen=True)
class Dataset:
    frame: pd.DataFrame | None  # None when the data streams: `table` reads it in batches
    fingerprint: str
    source: str
    at: str | None = None  # a Snowflake query's time-travel point (ISO timestamp)
    table: BatchTable | None = None

    @property
    def streamed(self) -> bool:
        return self.table is not None


def load_dataset(spec: DataSpec, query_reader: QueryReader | None = None,
                 as_of: date | None = None, at: str | None = None,
                 snowflake_settings: SnowflakeSettings | None = None) -> Dataset:
    """Load the configured data (up to an as-of date for backfills) and fingerprint it without
    hashing DataFrames where avoidable. A query holding `{at}` after its table names is read as
    of a time-travel point: `at` (a rebuild's), else now, kept on the Dataset for lineage."""
    if spec.source == "synthetic":
        frame = generate_claims(spec.synthetic_rows, seed=spec.seed, drift=spec.drift)
        data = Dataset(frame, _fingerprint(spec),
                       f"synthetic(rows={spec.synthetic_rows}, seed={spec.seed})")
    elif spec.source == "file" and file_path(spec).endswith("/"):
        with revealed(file_path(spec), data_urls) as real:
            files = batches.parquet_files(real)
            frame = pd.concat([b.to_pandas() for b in batches.parquet_reader(files)()],
                              ignore_index=True)
            data = Dataset(frame, batches.files_fingerprint(files), redact(file_path(spec)))
    elif spec.source == "file":
        data = Dataset(read_frame(file_path(spec)), _fingerprint(spec), redact(file_path(spec)))
    else:
        if query_reader is None:
            params = (snowflake_settings or SnowflakeSettings()).connection()
            query_reader = lambda query: snowflake.read_query(query, params)  # noqa: E731
        query = _query(spec)
        if snowflake.AT_PLACEHOLDER in query:
            at = at or datetime.now(UTC).isoformat(timespec="seconds")
            query = snowflake.time_travel(query, at)
        else:
            at = None
        frame, fingerprint = query_reader(query)
        data = Dataset(frame, fingerprint, "snowflake query", at)
    return data if as_of is None else until(data, spec.date_column, as_of)


def _query(spec: DataSpec) -> str:
    """data.query of a snowflake source (DataSpec's validator requires it there)."""
    if spec.query is None:
        raise ValueError(f"data.query is not set (data.source is {spec.source})")
    return spec.query


def _fingerprint(spec: DataSpec) -> str:
    """The fingerprint of a generated or file source (known without a query)."""
    found = source_fingerprint(spec)
    if found is None:
        raise DataError(f"a {spec.source} source has no fingerprint before it is read")
    return found


def until(data: Dataset, column: str, as_of: date) -> Dataset:
    """The rows dated on or before as_of; the as-of date becomes part of the fingerprint."""
    if data.frame is None:
        raise DataError("an as-of date bounds loaded rows; this data streams (open_table bounds it)")
    if column not in data.frame.columns:
        raise DataError(f"an as-of date needs the date column {column!r}, which the data lacks "
                        f"(set data.date_column)")
    try:
        dates = pd.to_datetime(data.frame[column])
    except (ValueError, TypeError):
        raise DataError(f"column {column!r} does not hold dates; it cannot bound an as-of run") from None
    kept = data.frame.loc[dates <= pd.Timestamp(as_of) + pd.Timedelta(days=1) - pd.Timedelta(1)]
    fingerprint = as_of_fingerprint(data.fingerprint, as_of.isoformat())
    return Dataset(kept.reset_index(drop=True), fingerprint,
                   f"{data.source} as of {as_of.isoformat()}", data.at)


def _time_travel(spec: DataSpec, at: str | None) -> tuple[str, str | None]:
    query = _query(spec)
    if snowflake.AT_PLACEHOLDER not in query:
        return query, None
    at = at or datetime.now(UTC).isoformat(timespec="seconds")
    return snowflake.time_travel(query, at), at


def open_table(spec: DataSpec, training: TrainingSpec, as_of: date | None = None,
               at: str | None = None, batch_rows: int | None = None,
               target: str | None = None,
               snowflake_settings: SnowflakeSettings | None = None) -> Dataset:
    """The configured data as a BatchTable (read again for each pass, never whole) with its
    fingerprint; the split is the table's per-row hash split. Batches are smaller for a table
    that trains from external memory (each batch read costs its rows in Arrow and pandas)."""
    split: dict[str, Any] = {"seed": training.seed, "test_size": training.test_size,
             "validation_size": training.validation_size, "key": spec.key,
             "date_column": spec.date_column, "as_of": as_of,
             "stratify": target if training.split == "hash-stratified" else None}
    if spec.source == "synthetic":
        frame = generate_claims(spec.synthetic_rows, seed=spec.seed, drift=spec.drift)
        size = int(frame.memory_usage(deep=True).sum())
        table = BatchTable(batches.frame_reader(frame, batch_rows or _batch_rows(size, training)),
                           "synthetic", **split, estimated_bytes=size)
        fingerprint, source = _fingerprint(spec), f"synthetic(rows={spec.synthetic_rows})"
    elif spec.source == "file":
        with revealed(file_path(spec), data_urls) as real:
            reader_of, size, fingerprint = _file_table(spec, real)
        table = BatchTable(_revealing(file_path(spec), reader_of(batch_rows or _batch_rows(
            size, training))), redact(file_path(spec)), **split, estimated_bytes=size)
        source = redact(file_path(spec))
    else:
        params = (snowflake_settings or SnowflakeSettings()).connection()
        query, at = _time_travel(spec, at)
        if at is None:
            batches.log_progress(
                f"the Snowflake query is run again for each pass: rows written between passes "
                f"make them disagree (write {snowflake.AT_PLACEHOLDER} after its table names "
                "to read them all as of one moment)", logging.WARNING)

        rows = batch_rows or _batch_rows(0, training)

        def reader():
            return snowflake.query_batches(query, rows, params)[1]

        table = BatchTable(reader, "snowflake query", **split)
        fingerprint, source = _stream_fingerprint(reader), "snowflake query"
    if as_of is not None:
        fingerprint = as_of_fingerprint(fingerprint, as_of.isoformat())
        source = f"{source} as of {as_of.isoformat()}"
    return Dataset(None, fingerprint, source, at, table)


def _batch_rows(estimated_bytes: int, training: TrainingSpec) -> int:
    """Rows per batch: fewer when the table trains from external memory, where what a batch
    holds (Arrow, pandas, the split) is most of the memory (measured in docs/large-tables.md)."""
    from tasks.training.matrices import external_memory_above

    if external_memory_above(estimated_bytes, training):
        return batches.EXTERNAL_MEMORY_BATCH_ROWS
    return batches.BATCH_ROWS


def _file_table(spec: DataSpec, real: str) -> tuple[Callable[[int], batches.Reader], int, str]:
    """A reader of the file (or folder) for a batch size, its estimated size in memory and its
    fingerprint."""
    if file_path(spec).endswith("/") or file_path(spec).lower().endswith((".parquet", ".pq")):
        files = batches.parquet_files(real)
        size = batches.parquet_estimate(files)[1]
        fingerprint = (batches.files_fingerprint(files) if file_path(spec).endswith("/")
                       else _fingerprint(spec))
        return lambda rows: batches.parquet_reader(files, rows), size, fingerprint
    import fsspec

    fs, root = fsspec.core.url_to_fs(real)
    if not fs.exists(root):
        raise DataError(f"data file {redact(file_path(spec))} does not exist")
    return lambda rows: batches.csv_reader(real, rows), int(fs.size(root)) * 2, _fingerprint(spec)


def _revealing(location: str, reader):
    """A reader whose errors name the location redacted (credentials never in a message)."""
    def read():
        with revealed(location, data_urls):
            yield from reader()

    return read


def _stream_fingerprint(reader) -> str:
    import hashlib

    digest = hashlib.sha256()
    for batch in reader():
        digest.update(batch.serialize())
    return digest.hexdigest()


def streams(spec: DataSpec, training: TrainingSpec) -> bool:
    """Whether the data is read in batches: as configured, else a Parquet folder, or a file
    larger (uncompressed) than training.streaming_above."""
    if training.streaming is not None:
        return training.streaming
    if spec.source != "file":
        return False
    if file_path(spec).endswith("/"):
        return True
    with revealed(file_path(spec), data_urls) as real:
        if file_path(spec).lower().endswith((".parquet", ".pq")):
            size = batches.parquet_estimate(batches.parquet_files(real))[1]
        else:
            import fsspec

            fs, root = fsspec.core.url_to_fs(real)
            size = int(fs.size(root)) * 2 if fs.exists(root) else 0
    return size > training.streaming_above


@step("load-data", **NETWORK_RETRIES)
def load_data(spec: DataSpec, snowflake: SnowflakeSettings, as_of: date | None = None,
              training: TrainingSpec | None = None, target: str | None = None) -> Dataset:
    """Load the data, or open it as a stream of batches when it is large (its split
    stratified by `target` under training.split: hash-stratified); network sources retry on
    transient errors, bad input does not. A query runs with the given Snowflake settings."""
    if training is not None and streams(spec, training):
        return open_table(spec, training, as_of=as_of, target=target,
                          snowflake_settings=snowflake)
    return load_dataset(spec, as_of=as_of, snowflake_settings=snowflake)
