"""Reading data: one set of rules for files (local or fsspec URLs, .parquet or .csv) and
Snowflake queries, whether a whole training set or a scoring batch streamed in Arrow batches."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from tasks.adapters import snowflake
from tasks.adapters.locations import SNOWFLAKE, check_exists, file_format
from tasks.contracts.training import FeatureSpec
from tasks.core.credentials import revealed
from tasks.core.errors import DataError
from tasks.core.redact import redact, scrubbing
from tasks.core.settings import SnowflakeSettings, data_urls

BATCH_ROWS = 131_072


def csv_header(location: str) -> list[str]:
    """The header of a CSV file; a column named twice is a DataError naming it."""
    import fsspec

    with fsspec.open(location, "rt", compression="infer") as fh:
        line = fh.readline().rstrip("\r\n")
    columns = [c.strip().strip('"') for c in line.split(",")] if line else []
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            raise DataError(f"duplicate column name {name!r} in {location}")
        seen.add(name)
    return columns


def read_frame(location: str) -> pd.DataFrame:
    """A whole file as a DataFrame (training data): types inferred over the whole file, columns
    ending in `_date` parsed as dates. A redacted URL is opened with its credentials; errors
    name it redacted."""
    with revealed(location, data_urls) as real:
        return _read_frame(real)


def _read_frame(location: str) -> pd.DataFrame:
    kind = file_format(location)
    check_exists(location)
    import fsspec

    try:  # through fsspec, as batches are: pandas' own URL reader drops user:password
        if kind == "parquet":
            with fsspec.open(location, "rb") as fh:
                return pd.read_parquet(fh)
        header = csv_header(location)
        with fsspec.open(location, "rb", compression="infer") as fh:
            return pd.read_csv(fh, low_memory=False,
                               parse_dates=[c for c in header if c.endswith("_date")])
    except DataError:
        raise
    except Exception as exc:  # parser errors differ per engine; name the file and the reason
        raise DataError(f"cannot read {location}: {str(exc).splitlines()[0]}") from None


@dataclass
class Source:
    """Input batches holding the model's features and the kept columns; `columns` is all the
    input has (the rest is ignored, and named in summaries)."""

    columns: list[str]
    kept: list[str]
    batches: Iterator[pa.RecordBatch]
    description: str


def fill_date(location: str, day: str) -> str:
    return location.replace("{date}", day)


def default_keep(columns: list[str], spec: FeatureSpec) -> list[str]:
    """Identifier columns travel with the predictions: `id` and `*_id` that are not features."""
    return [c for c in columns if (c == "id" or c.endswith("_id")) and c not in spec.features]


def open_source(location: str, spec: FeatureSpec, keep: list[str] | None = None,
                optional: tuple[str, ...] = (), batch_rows: int = BATCH_ROWS,
                snowflake_settings: SnowflakeSettings | None = None) -> Source:
    """Stream a .parquet/.csv file or a Snowflake query (`snowflake:SELECT …`) in Arrow batches
    holding only the features, the kept columns (default: identifiers) and `optional` ones the
    input happens to have (a label, for monitoring). A redacted URL is opened with its
    credentials; the source's description and every error name it redacted. A query runs with
    the Snowflake settings given (none given: Snowflake is not configured)."""
    with revealed(location, data_urls) as real:
        return _open_source(real, spec, keep, optional, batch_rows, snowflake_settings)


def _open_source(location: str, spec: FeatureSpec, keep: list[str] | None,
                 optional: tuple[str, ...], batch_rows: int,
                 snowflake_settings: SnowflakeSettings | None) -> Source:
    if location.startswith(SNOWFLAKE):
        params = (snowflake_settings or SnowflakeSettings()).connection()
        columns, batches = snowflake.query_batches(location.removeprefix(SNOWFLAKE).strip(),
                                                   batch_rows, params)
        kept, needed = _needed(columns, spec, keep, optional)
        return Source(columns, kept, (b.select(needed) for b in batches), "snowflake query")
    kind = file_format(location)
    check_exists(location)
    if kind == "parquet":
        return _parquet_source(location, spec, keep, optional, batch_rows)
    return _csv_source(location, spec, keep, optional, batch_rows)


def _needed(columns: list[str], spec: FeatureSpec, keep: list[str] | None,
            optional: tuple[str, ...]) -> tuple[list[str], list[str]]:
    if not columns:
        raise DataError("input has no columns (empty file?): nothing to score")
    missing = [c for c in spec.features if c not in columns]
    if missing:
        raise DataError(f"input lacks feature column(s) the model needs: {', '.join(missing)}")
    absent = [c for c in keep or [] if c not in columns]
    if absent:
        raise DataError(f"--keep names column(s) the input lacks: {', '.join(absent)}")
    kept = list(keep) if keep is not None else default_keep(columns, spec)
    wanted = set(spec.features) | set(kept) | set(optional)
    return kept, [c for c in columns if c in wanted]


def _opened(location: str, batches_of) -> Iterator[pa.RecordBatch]:
    """Batches from a file opened through fsspec, closed when the batches end or are dropped."""
    import fsspec

    with scrubbing(), fsspec.open(location, "rb", compression="infer") as fh:
        try:
            yield from batches_of(fh)
        except pa.ArrowInvalid as exc:
            raise DataError(f"{location}: {_arrow_reason(exc)}") from None


def _parquet_source(location: str, spec: FeatureSpec, keep: list[str] | None,
                    optional: tuple[str, ...], rows: int) -> Source:
    import fsspec
    import pyarrow.parquet as pq

    try:
        with fsspec.open(location, "rb") as fh:
            columns = pq.read_schema(fh).names
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"cannot read {location}: {str(exc).splitlines()[0]}") from None
    kept, needed = _needed(columns, spec, keep, optional)

    def batches(fh) -> Iterator[pa.RecordBatch]:
        # pre_buffer (the default) keeps every row group's buffers: memory would grow with input
        reader = pq.ParquetFile(fh, read_dictionary=[c for c in spec.categories if c in columns],
                                pre_buffer=False)
        yield from reader.iter_batches(batch_size=rows, columns=needed)

    return Source(columns, kept, _opened(location, batches), redact(location))


def _csv_source(location: str, spec: FeatureSpec, keep: list[str] | None,
                optional: tuple[str, ...], rows: int) -> Source:
    import pyarrow.csv as pcsv

    columns = csv_header(location)
    kept, needed = _needed(columns, spec, keep, optional)
    types = {c: pa.string() for c in spec.categories}
    types.update({c: pa.float64() for c in spec.features if c not in spec.categories})

    def batches(fh) -> Iterator[pa.RecordBatch]:
        yield from pcsv.open_csv(
            fh, read_options=pcsv.ReadOptions(block_size=max(1 << 20, rows * 200)),
            convert_options=pcsv.ConvertOptions(include_columns=needed, column_types=types))

    return Source(columns, kept, _opened(location, batches), redact(location))


def _arrow_reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0]
    if "conversion error to double" in text or "conversion error to float" in text:
        return f"wrong type, a feature expected to hold numbers holds text ({text})"
    return text


def prefetch(batches: Iterator[pa.RecordBatch], depth: int = 2) -> Iterator[pa.RecordBatch]:
    """Read the next batches in a thread while the current one is scored (bounded queue)."""
    box: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def offer(item) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        try:
            for batch in batches:
                if not offer(batch):
                    return
            offer(done)
        except BaseException as exc:  # handed to the consumer, raised there
            offer(exc)
        finally:  # a source holding a connection (Snowflake) or a file releases it here
            closer = getattr(batches, "close", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    closer()

    thread = threading.Thread(target=pump, name="mlops-prefetch", daemon=True)
    thread.start()
    try:
        while (item := box.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
