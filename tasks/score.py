"""Batch scoring: the champion, checked against its registered checksum, scores Arrow batches
from a file or Snowflake and writes predictions atomically; memory does not grow with input."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from tasks.adapters.mlflow_registry import Registry
from tasks.core.config import ModelConfig
from tasks.core.errors import DataError, IntegrityError, ScoringError, retry_transient
from tasks.profile import Profile
from tasks.train import FeatureSpec

BATCH_ROWS = 131_072
SNOWFLAKE = "snowflake:"
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# -- the champion ---------------------------------------------------------------------------
@dataclass
class Champion:
    """A registered version ready to score: booster verified against its artifact_sha256 tag."""

    name: str
    version: str
    alias: str
    booster: object
    spec: FeatureSpec
    profile: Profile | None
    sha256: str


def load_champion(registry: Registry, cfg: ModelConfig, into: Path) -> Champion:
    """Download the version behind the production alias, check its booster's SHA-256 against
    the registered tag before loading anything, then load the booster (native format)."""
    import xgboost as xgb

    from tasks.deploy import fetch_version

    alias = cfg.deploy.production.alias
    ref = registry.version_by_alias(cfg.name, alias)
    if ref is None:
        raise ScoringError(f"{cfg.name} has no @{alias} version yet: promote one first "
                           f"(mlops run {cfg.name}, or mlops promote)")
    local = fetch_version(registry, cfg.name, ref.version, into)
    expected = ref.tags.get("artifact_sha256")
    if not expected:
        raise IntegrityError(f"{cfg.name} v{ref.version} has no artifact_sha256 tag: "
                             "refusing to score with an unverifiable model")
    if local.booster_sha256 != expected:
        raise IntegrityError(
            f"{cfg.name} v{ref.version}: model artifact SHA-256 {local.booster_sha256[:12]}… does "
            f"not match the registered {expected[:12]}…; refusing to score (artifact tampered?)")
    booster = xgb.Booster()
    booster.load_model(str(next(local.path.rglob("*.ubj"))))
    # batch scoring runs on CPU runners, whatever device trained the model
    booster.set_param({"device": "cpu", "nthread": os.cpu_count() or 1})
    profile_file = next(local.path.rglob("reference_profile.json"), None)
    profile = Profile.model_validate_json(profile_file.read_text()) if profile_file else None
    return Champion(name=cfg.name, version=ref.version, alias=alias, booster=booster,
                    spec=FeatureSpec.model_validate(local.spec), profile=profile,
                    sha256=expected)


# -- sources --------------------------------------------------------------------------------
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
                optional: tuple[str, ...] = (), batch_rows: int = BATCH_ROWS) -> Source:
    """Stream a .parquet/.csv file or a Snowflake query (`snowflake:SELECT …`) in Arrow batches
    holding only the features, the kept columns (default: identifiers) and `optional` ones the
    input happens to have (a label, for monitoring)."""
    if location.startswith(SNOWFLAKE):
        from tasks.adapters.snowflake import query_batches

        columns, batches = query_batches(location.removeprefix(SNOWFLAKE).strip(), batch_rows)
        kept, needed = _needed(columns, spec, keep, optional)
        return Source(columns, kept, (b.select(needed) for b in batches), "snowflake query")
    path = Path(location)
    if not path.is_file():
        raise DataError(f"input {location} does not exist")
    lower = location.lower()
    if lower.endswith((".parquet", ".pq")):
        return _parquet_source(path, spec, keep, optional, batch_rows)
    if lower.endswith((".csv", ".csv.gz")):
        return _csv_source(path, spec, keep, optional, batch_rows)
    raise DataError(f"input must be .parquet, .csv or snowflake:<query>, got {location}")


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


def _parquet_source(path: Path, spec: FeatureSpec, keep: list[str] | None,
                    optional: tuple[str, ...], rows: int) -> Source:
    import pyarrow.parquet as pq

    try:
        columns = pq.read_schema(path).names
        kept, needed = _needed(columns, spec, keep, optional)
        # pre_buffer (the default) keeps every row group's buffers: memory would grow with input
        reader = pq.ParquetFile(path, read_dictionary=[c for c in spec.categories if c in columns],
                                pre_buffer=False)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    batches = reader.iter_batches(batch_size=rows, columns=needed)
    return Source(columns, kept, _guarded(batches, path), str(path))


def _csv_source(path: Path, spec: FeatureSpec, keep: list[str] | None,
                optional: tuple[str, ...], rows: int) -> Source:
    import pyarrow.csv as pcsv

    with pa.input_stream(str(path), compression="detect") as fh:
        first = fh.read(1 << 16).decode(errors="replace").splitlines()
    columns = [c.strip().strip('"') for c in first[0].split(",")] if first else []
    kept, needed = _needed(columns, spec, keep, optional)
    types = {c: pa.string() for c in spec.categories}
    types.update({c: pa.float64() for c in spec.features if c not in spec.categories})
    try:
        reader = pcsv.open_csv(
            path, read_options=pcsv.ReadOptions(block_size=max(1 << 20, rows * 200)),
            convert_options=pcsv.ConvertOptions(include_columns=needed, column_types=types))
    except pa.ArrowInvalid as exc:
        raise DataError(f"{path}: {_arrow_reason(exc)}") from None
    return Source(columns, kept, _guarded(reader, path), str(path))


def _arrow_reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0]
    if "conversion error to double" in text or "conversion error to float" in text:
        return f"wrong type, a feature expected to hold numbers holds text ({text})"
    return text


def _guarded(batches, path: Path) -> Iterator[pa.RecordBatch]:
    try:
        yield from batches
    except pa.ArrowInvalid as exc:
        raise DataError(f"{path}: {_arrow_reason(exc)}") from None


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
        finally:  # a source holding a connection (Snowflake) releases it here
            closer = getattr(batches, "close", None)
            if closer is not None:
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


# -- features and predictions ---------------------------------------------------------------
@dataclass
class Prepared:
    matrix: pd.DataFrame
    missing: dict[str, int]


def prepare(batch: pa.RecordBatch, spec: FeatureSpec) -> Prepared:
    """The model's feature matrix from an Arrow batch: numbers as float32, categories coded by
    the training categories (unseen values become missing, as in training); wrong types raise."""
    out: dict[str, object] = {}
    missing: dict[str, int] = {}
    names = batch.schema.names
    for col in spec.features:
        arr = batch.column(names.index(col))
        if col in spec.categories:
            out[col] = _codes(arr, spec.categories[col])
            missing[col] = arr.null_count
        else:
            out[col] = _numbers(arr, col)
    return Prepared(pd.DataFrame(out, copy=False), missing)


def _numbers(arr: pa.Array, col: str) -> np.ndarray:
    kind = arr.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
            or pa.types.is_decimal(kind) or pa.types.is_null(kind)):
        raise DataError(f"wrong type: feature {col!r} must hold numbers, the input has {kind}")
    return pc.cast(arr, pa.float32()).to_numpy(zero_copy_only=False)


def _codes(arr: pa.Array, categories: list[str]) -> pd.Categorical:
    if not pa.types.is_dictionary(arr.type):
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            arr = pc.cast(arr, pa.string())
        arr = pc.dictionary_encode(arr)
    index = {c: i for i, c in enumerate(categories)}
    lookup = np.array([index.get(str(v), -1) for v in arr.dictionary.to_pylist()] + [-1],
                      dtype=np.int16)
    positions = pc.fill_null(arr.indices, len(arr.dictionary)).to_numpy(zero_copy_only=False)
    return pd.Categorical.from_codes(lookup[positions], categories=categories)


def predict(booster, prepared: Prepared) -> np.ndarray:
    return booster.inplace_predict(prepared.matrix)


def prediction_columns(raw: np.ndarray, spec: FeatureSpec) -> dict[str, pa.Array]:
    """The public prediction columns (same names as the served model's) as Arrow arrays."""
    if spec.task == "regression":
        return {"prediction": pa.array(raw.astype(np.float64))}
    classes = pa.array(spec.classes)
    if spec.task == "binary":
        codes = pa.array((raw >= 0.5).astype(np.int8))
        return {"prediction": pa.DictionaryArray.from_arrays(codes, classes),
                "probability": pa.array(raw.astype(np.float64))}
    out = {"prediction": pa.DictionaryArray.from_arrays(
        pa.array(raw.argmax(axis=1).astype(np.int16)), classes)}
    out.update({f"probability_{c}": pa.array(raw[:, i].astype(np.float64))
                for i, c in enumerate(spec.classes)})
    return out


# -- sinks ----------------------------------------------------------------------------------
class Sink:
    """Predictions written batch by batch to a hidden temporary target that replaces the real
    one only on commit; abort (any failure) leaves nothing behind."""

    def __init__(self, location: str):
        self.location = location
        self._writer = None
        self._snowflake = None
        if location.startswith(SNOWFLAKE):
            from tasks.adapters.snowflake import TableWriter

            self._snowflake = TableWriter(location.removeprefix(SNOWFLAKE).strip())
            return
        self.path = Path(location)
        self.csv = location.lower().endswith(".csv")
        if not (self.csv or location.lower().endswith((".parquet", ".pq"))):
            raise DataError(f"output must be .parquet, .csv or snowflake:<table>, got {location}")
        if self.path.is_dir():
            raise DataError(f"output {location} is a directory")
        self.tmp = self.path.with_name(f".{self.path.name}.partial")

    def write(self, table: pa.Table) -> None:
        if self._snowflake is not None:
            self._snowflake.write(table)
            return
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.csv:
                import pyarrow.csv as pcsv

                self._writer = pcsv.CSVWriter(self.tmp, self._csv_schema(table.schema))
            else:
                import pyarrow.parquet as pq

                # dictionary encoding only where values repeat: trying it on unique ids costs
                # more than the whole prediction write
                encoded = [f.name for f in table.schema if pa.types.is_dictionary(f.type)]
                self._writer = pq.ParquetWriter(self.tmp, table.schema, use_dictionary=encoded)
        if self.csv:
            table = table.cast(self._csv_schema(table.schema))
        self._writer.write_table(table)

    @staticmethod
    def _csv_schema(schema: pa.Schema) -> pa.Schema:
        return pa.schema([pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type)
                          else f for f in schema])

    def commit(self) -> None:
        if self._snowflake is not None:
            self._snowflake.commit()
            return
        self._writer.close()
        self.tmp.replace(self.path)

    def abort(self) -> None:
        if self._snowflake is not None:
            self._snowflake.abort()
            return
        if self._writer is not None:
            with contextlib.suppress(Exception):  # the partial file goes anyway
                self._writer.close()
        self.tmp.unlink(missing_ok=True)


# -- the scoring loop -----------------------------------------------------------------------
class ScoringSummary(BaseModel):
    model: str
    version: str
    input: str
    output: str
    rows: int
    seconds: float
    rows_per_s: float
    kept: list[str]
    ignored: list[str]
    scored_at: str
    distribution: dict[str, float]

    def to_markdown(self) -> str:
        lines = [f"# Batch scoring: {self.model} v{self.version}", "",
                 f"- input: {self.input}", f"- output: {self.output}",
                 f"- rows: {self.rows:,} in {self.seconds:.1f} s ({self.rows_per_s:,.0f} rows/s)",
                 f"- columns kept with the predictions: {', '.join(self.kept) or 'none'}",
                 f"- input columns ignored: {', '.join(self.ignored) or 'none'}",
                 f"- scored at: {self.scored_at}", "", "| prediction | value |", "|---|---|",
                 *[f"| {k} | {v:.4g} |" for k, v in self.distribution.items()]]
        return "\n".join(lines) + "\n"


class PredictionStats:
    """Running summary of predictions: mean/min/max of the score, or class shares."""

    def __init__(self, spec: FeatureSpec):
        self.spec = spec
        self.n = 0
        self.total = 0.0
        self.low = np.inf
        self.high = -np.inf
        self.classes = np.zeros(max(len(spec.classes), 1), dtype=np.int64)

    def add(self, raw: np.ndarray) -> None:
        self.n += len(raw)
        if self.spec.task == "multiclass":
            self.classes += np.bincount(raw.argmax(axis=1), minlength=len(self.spec.classes))
            return
        self.total += float(raw.sum(dtype=np.float64))
        self.low, self.high = min(self.low, float(raw.min())), max(self.high, float(raw.max()))
        if self.spec.task == "binary":
            self.classes[1] += int((raw >= 0.5).sum())

    def summary(self) -> dict[str, float]:
        if not self.n:
            return {}
        if self.spec.task == "multiclass":
            return {f"share {c}": n / self.n for c, n in zip(self.spec.classes, self.classes, strict=True)}
        name = "probability" if self.spec.task == "binary" else "prediction"
        out = {f"mean {name}": self.total / self.n, f"min {name}": self.low,
               f"max {name}": self.high}
        if self.spec.task == "binary":
            out[f"share predicted {self.spec.classes[1]}"] = self.classes[1] / self.n
        return out


def score_batches(champion: Champion, input_location: str, output_location: str,
                  keep: list[str] | None = None, progress: Progress = _quiet,
                  batch_rows: int = BATCH_ROWS) -> ScoringSummary:
    """Score every batch of the input into the output; all or nothing."""
    spec = champion.spec
    source = open_source(input_location, spec, keep, batch_rows=batch_rows)
    kept = source.kept
    ignored = [c for c in source.columns if c not in spec.features and c not in kept]
    scored_at = datetime.now(UTC)
    stamp = pa.scalar(scored_at, type=pa.timestamp("us", tz="UTC"))
    sink = Sink(output_location)
    stats = PredictionStats(spec)
    start = time.perf_counter()
    rows, next_report = 0, 1_000_000
    try:
        for batch in prefetch(source.batches):
            if batch.num_rows == 0:
                continue
            raw = predict(champion.booster, prepare(batch, spec))
            stats.add(raw)
            n = batch.num_rows
            columns = {c: batch.column(batch.schema.names.index(c)) for c in kept}
            columns.update(prediction_columns(raw, spec))
            columns["model_name"] = pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, dtype=np.int8)), pa.array([champion.name]))
            columns["model_version"] = pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, dtype=np.int8)), pa.array([champion.version]))
            columns["scored_at"] = pa.array(np.full(n, np.datetime64(scored_at.replace(tzinfo=None),
                                                                     "us")), stamp.type)
            sink.write(pa.table(columns))
            rows += n
            if rows >= next_report:
                progress(f"{champion.name}: scored {rows:,} rows "
                         f"({rows / (time.perf_counter() - start):,.0f} rows/s)")
                next_report += 1_000_000
        if rows == 0:
            raise DataError(f"input {source.description} has no rows: nothing scored")
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    seconds = time.perf_counter() - start
    return ScoringSummary(model=champion.name, version=champion.version,
                          input=source.description, output=output_location, rows=rows,
                          seconds=round(seconds, 3), rows_per_s=round(rows / seconds, 1),
                          kept=kept, ignored=ignored,
                          scored_at=scored_at.isoformat(timespec="seconds"),
                          distribution=stats.summary())


# -- Prefect tasks --------------------------------------------------------------------------
@task(name="load-champion", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE,
      retry_condition_fn=retry_transient)
def champion_model(registry: Registry, cfg: ModelConfig, into: str) -> Champion:
    """Registry downloads retry on network errors; a missing or tampered champion does not."""
    return load_champion(registry, cfg, Path(into))


@task(name="score-batches", cache_policy=NO_CACHE)
def score(champion: Champion, input_location: str, output_location: str,
          keep: list[str] | None = None) -> ScoringSummary:
    from prefect.logging import get_run_logger

    logger = get_run_logger()
    summary = score_batches(champion, input_location, output_location, keep, logger.info)
    logger.info(f"{summary.model} v{summary.version}: {summary.rows:,} rows scored in "
                f"{summary.seconds:.1f} s ({summary.rows_per_s:,.0f} rows/s) -> {summary.output}")
    return summary


@task(name="publish-scoring-summary", cache_policy=NO_CACHE)
def publish_summary(summary: ScoringSummary) -> None:
    from prefect.artifacts import create_markdown_artifact

    from tasks.tracking import artifact_key

    create_markdown_artifact(summary.to_markdown(), key=artifact_key("batch-scoring", summary.model),
                             description=f"{summary.model}: {summary.rows:,} rows scored")
