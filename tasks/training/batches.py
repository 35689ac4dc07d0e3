"""Training data as a table read in Arrow batches of bounded size, one pass after another, and
the stable per-row split (a hash of the row key, or of the row index) that never needs the whole
table."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa

from tasks.core.errors import DataError

BATCH_ROWS = 131_072
EXTERNAL_MEMORY_BATCH_ROWS = 32_768  # a fourth: about 130 MB less at the peak (1M rows, 20 columns)
TRAIN, VALID, TEST = 0, 1, 2
PROGRESS_EVERY_S = 10.0
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_GOLDEN_FRACTION = 0.6180339887498949

Reader = Callable[[], Iterator[pa.RecordBatch]]
Progress = Callable[[str], None]


def log_progress(message: str, level: int = logging.INFO) -> None:
    """To the Prefect run's log (shown in the UI) inside a run, else to the process log."""
    try:
        from prefect.exceptions import MissingContextError
        from prefect.logging import get_run_logger

        get_run_logger().log(level, message)
    except MissingContextError:
        logging.getLogger("mlops.data").log(level, message)


def _splitmix64(h: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = h + _GOLDEN
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> np.uint64(31))


def split_codes(n: int, seed: int, test_size: float, validation_size: float, start: int = 0,
                keys: pd.Series | None = None, labels: pd.Series | None = None,
                seen: dict[str, int] | None = None) -> np.ndarray:
    """TRAIN, VALID or TEST per row, from a hash of its key (as text) or of its row index plus
    the seed: the same row lands in the same split in every pass and on every path. About
    test_size of the rows are test, validation_size of the rest validation. With labels (a
    class per row; `seen` counts each class's earlier rows in this pass) the split is
    stratified instead: see stratified_positions."""
    if labels is not None:
        u = stratified_positions(labels, seed, {} if seen is None else seen)
    else:
        if keys is None:
            h = np.arange(start, start + n, dtype=np.uint64)
        else:
            h = pd.util.hash_array(keys.astype("string").fillna("<null>").to_numpy(dtype=object))
        with np.errstate(over="ignore"):
            h = _splitmix64(h ^ _splitmix64(np.full(1, seed, dtype=np.uint64)))
        u = (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    codes = np.full(n, TRAIN, dtype=np.uint8)
    codes[u < test_size + (1 - test_size) * validation_size] = VALID
    codes[u < test_size] = TEST
    return codes


def stratified_positions(labels: pd.Series, seed: int, seen: dict[str, int]) -> np.ndarray:
    """A number in [0, 1) per row: the k-th row of a class (in table order, counted in `seen`
    across batches) gets frac(offset + k * golden ratio), the offset a hash of the class and
    the seed. A low-discrepancy sequence: every class, and every prefix of it, falls into the
    splits' shares to within a couple of rows, without holding the table."""
    text = labels.astype("string").fillna("<null>").to_numpy(dtype=object)
    u = np.empty(len(text), dtype=np.float64)
    for cls in pd.unique(text):
        rows = np.flatnonzero(text == cls)
        with np.errstate(over="ignore"):
            h = _splitmix64(pd.util.hash_array(np.array([cls], dtype=object))
                            ^ _splitmix64(np.full(1, seed, dtype=np.uint64)))
        offset = float(h[0] >> np.uint64(11)) / float(1 << 53)
        k = np.arange(seen.get(cls, 0), seen.get(cls, 0) + len(rows), dtype=np.float64)
        u[rows] = np.mod(offset + k * _GOLDEN_FRACTION, 1.0)
        seen[cls] = seen.get(cls, 0) + len(rows)
    return u


def hash_split_rows(frame: pd.DataFrame, seed: int, test_size: float, validation_size: float,
                    key: str | None = None, stratify: str | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The streaming split of a whole frame's rows (train, validation, test positions);
    stratified by the column `stratify` when given."""
    codes = split_codes(len(frame), seed, test_size, validation_size,
                        keys=None if key is None else frame[key],
                        labels=None if stratify is None else frame[stratify])
    train, valid, test = (np.flatnonzero(codes == part) for part in (TRAIN, VALID, TEST))
    return train, valid, test


@dataclass(frozen=True)
class BatchTable:
    """A table never held whole: each pass reads it again as pandas frames of at most the
    reader's batch size, with rows after `as_of` left out and one split kept on request."""

    reader: Reader
    description: str
    seed: int
    test_size: float
    validation_size: float
    key: str | None = None
    stratify: str | None = None  # the target: the split is stratified by its classes
    date_column: str | None = None
    as_of: date | None = None
    estimated_bytes: int = 0
    progress: Progress = field(default=lambda message: log_progress(message), compare=False)

    def frames(self, part: int | None = None, what: str = "read") -> Iterator[pd.DataFrame]:
        """One pass over the table (only the rows of `part`, when given), logging rows, batches
        and elapsed time every few seconds and at the end."""
        start = rows = batches = 0
        seen: dict[str, int] = {}  # rows of each class so far (a stratified split)
        began = last = time.perf_counter()
        for batch in self.reader():
            frame = batch.to_pandas()
            n = len(frame)
            keep = np.ones(n, dtype=bool)
            if part is not None:
                codes = split_codes(n, self.seed, self.test_size, self.validation_size, start,
                                    None if self.key is None else frame[self.key],
                                    None if self.stratify is None else frame[self.stratify], seen)
                keep &= codes == part
            if self.as_of is not None:
                keep &= self._dated(frame)
            start += n
            batches += 1
            if not keep.all():
                frame = frame.loc[keep].reset_index(drop=True)
            rows += len(frame)
            now = time.perf_counter()
            if now - last >= PROGRESS_EVERY_S:
                last = now
                self.progress(f"{what}: {rows:,} rows, {batches} batches, {now - began:.0f}s")
            yield frame
        self.progress(f"{what}: {rows:,} rows in {batches} batches "
                      f"({time.perf_counter() - began:.1f}s)")

    def passes(self, part: int | None, what: str) -> Callable[[], Iterator[pd.DataFrame]]:
        """A function starting a new pass over one split (for stages that read it twice)."""
        return lambda: self.frames(part, what)

    def _dated(self, frame: pd.DataFrame) -> np.ndarray:
        if self.date_column not in frame.columns:
            raise DataError(f"an as-of date needs the date column {self.date_column!r}, which "
                            "the data lacks (set data.date_column)")
        try:
            dates = pd.to_datetime(frame[self.date_column])
        except (ValueError, TypeError):
            raise DataError(f"column {self.date_column!r} does not hold dates; it cannot bound "
                            "an as-of run") from None
        end = pd.Timestamp(self.as_of) + pd.Timedelta(days=1) - pd.Timedelta(1)
        return (dates <= end).to_numpy()


def frame_reader(frame: pd.DataFrame, batch_rows: int = BATCH_ROWS) -> Reader:
    """Batches of a frame already in memory (the embedded synthetic data, tests)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return lambda: iter(table.to_batches(max_chunksize=batch_rows))


def parquet_files(location: str) -> list[str]:
    """The .parquet files of a dataset folder (sorted, so every pass reads the same order), or
    the one file named."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(location)
    if not fs.exists(root):
        raise DataError(f"{location} does not exist")
    if not fs.isdir(root):
        return [location]
    found = sorted(p for p in fs.find(root) if p.lower().endswith((".parquet", ".pq")))
    if not found:
        raise DataError(f"{location} holds no .parquet files")
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return [p if protocol in ("file", "local") else f"{protocol}://{p}" for p in found]


def parquet_reader(files: list[str], batch_rows: int = BATCH_ROWS) -> Reader:
    """Bounded batches of Parquet files in order (no pre-buffering: memory stays flat)."""
    import fsspec
    import pyarrow.parquet as pq

    def read() -> Iterator[pa.RecordBatch]:
        for path in files:
            with fsspec.open(path, "rb") as fh:
                try:
                    yield from pq.ParquetFile(fh, pre_buffer=False).iter_batches(batch_size=batch_rows)
                except (pa.ArrowException, OSError) as exc:
                    raise DataError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None

    return read


def parquet_estimate(files: list[str]) -> tuple[int, int]:
    """Rows and size in memory of Parquet files (8 bytes a value, as a float64 column holds
    them; text takes more), from their footers only."""
    import fsspec
    import pyarrow.parquet as pq

    rows = size = 0
    for path in files:
        try:
            with fsspec.open(path, "rb") as fh:
                meta = pq.ParquetFile(fh).metadata
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
        rows += meta.num_rows
        size += meta.num_rows * meta.num_columns * 8
    return rows, size


def csv_reader(location: str, batch_rows: int = BATCH_ROWS) -> Reader:
    import fsspec
    import pyarrow.csv as pcsv

    def read() -> Iterator[pa.RecordBatch]:
        with fsspec.open(location, "rb", compression="infer") as fh:
            try:
                yield from pcsv.open_csv(fh, read_options=pcsv.ReadOptions(
                    block_size=max(1 << 20, batch_rows * 200)))
            except pa.ArrowInvalid as exc:
                raise DataError(f"{location}: {str(exc).splitlines()[0]}") from None

    return read


def files_fingerprint(files: list[str]) -> str:
    """SHA-256 over the files' names (relative order) and bytes: a dataset folder's identity."""
    import fsspec

    digest = hashlib.sha256()
    for path in files:
        digest.update(path.rsplit("/", 1)[-1].encode() + b"\0")
        with fsspec.open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):  # noqa: B023
                digest.update(chunk)
    return digest.hexdigest()
