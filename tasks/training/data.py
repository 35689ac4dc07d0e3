"""Training data: the configured source (synthetic, file or Snowflake) as one DataFrame with a
fingerprint, up to an as-of date for backfills."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pandas as pd

from tasks.adapters import snowflake
from tasks.batch.sources import read_frame
from tasks.core.config import DataSpec
from tasks.core.errors import DataError
from tasks.core.redact import redact
from tasks.core.settings import Settings
from tasks.core.steps import NETWORK_RETRIES, step
from tasks.training.fingerprint import as_of_fingerprint, source_fingerprint
from tasks.training.synthetic import generate_claims

QueryReader = Callable[[str], tuple[pd.DataFrame, str]]


@dataclass(frozen=True)
class Dataset:
    frame: pd.DataFrame
    fingerprint: str
    source: str
    at: str | None = None  # a Snowflake query's time-travel point (ISO timestamp)


def load_dataset(spec: DataSpec, query_reader: QueryReader | None = None,
                 as_of: date | None = None, at: str | None = None) -> Dataset:
    """Load the configured data (up to an as-of date for backfills) and fingerprint it without
    hashing DataFrames where avoidable. A query holding `{at}` after its table names is read as
    of a time-travel point: `at` (a rebuild's), else now, kept on the Dataset for lineage."""
    if spec.source == "synthetic":
        frame = generate_claims(spec.synthetic_rows, seed=spec.seed, drift=spec.drift)
        data = Dataset(frame, source_fingerprint(spec),
                       f"synthetic(rows={spec.synthetic_rows}, seed={spec.seed})")
    elif spec.source == "file":
        data = Dataset(read_frame(spec.path), source_fingerprint(spec), redact(spec.path))
    else:
        if query_reader is None:
            params = Settings.from_env().snowflake.connection()
            query_reader = lambda query: snowflake.read_query(query, params)  # noqa: E731
        query = spec.query
        if snowflake.AT_PLACEHOLDER in query:
            at = at or datetime.now(UTC).isoformat(timespec="seconds")
            query = snowflake.time_travel(query, at)
        else:
            at = None
        frame, fingerprint = query_reader(query)
        data = Dataset(frame, fingerprint, "snowflake query", at)
    return data if as_of is None else until(data, spec.date_column, as_of)


def until(data: Dataset, column: str, as_of: date) -> Dataset:
    """The rows dated on or before as_of; the as-of date becomes part of the fingerprint."""
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


@step("load-data", **NETWORK_RETRIES)
def load_data(spec: DataSpec, as_of: date | None = None) -> Dataset:
    """Load the data; network sources retry on transient errors, bad input does not."""
    return load_dataset(spec, as_of=as_of)
