"""Batch scoring: the verified champion scores Arrow batches from a file or Snowflake and the
predictions are written all or nothing; memory does not grow with the input."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from tasks.adapters.sinks import Sink
from tasks.adapters.sources import BATCH_ROWS, open_source, prefetch
from tasks.batch.champion import Champion, predict, prepare
from tasks.contracts import explanations, predictions
from tasks.contracts.batch import ScoringSummary
from tasks.contracts.training import FeatureSpec
from tasks.core.errors import DataError, ScoringError
from tasks.core.settings import SnowflakeSettings
from tasks.core.steps import artifact_key, step
from tasks.reports.batch import scoring_markdown

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def prediction_columns(raw: np.ndarray, spec: FeatureSpec) -> dict[str, pa.Array]:
    """The public prediction columns (the served model's, from the prediction table) as Arrow
    arrays; class labels dictionary-encoded."""
    if spec.task == "regression":
        return {predictions.PREDICTION: pa.array(raw.astype(np.float64))}
    codes = pa.array(spec.class_codes(raw).astype(np.int32))
    out = {predictions.PREDICTION: pa.DictionaryArray.from_arrays(codes, pa.array(spec.classes))}
    out.update({name: pa.array(values) for name, values in
                predictions.probability_columns(raw, spec.task, spec.classes).items()})
    return out


def explanation_columns(champion: Champion, matrix, raw: np.ndarray, k: int
                        ) -> dict[str, pa.Array]:
    """The k largest SHAP contributions of each row (tree SHAP, margin units): feature names
    dictionary-encoded, contributions as float64; multiclass rows for their predicted class."""
    spec = champion.spec
    contribs = explanations.contributions(champion.booster, matrix)
    codes = spec.labels(raw) if spec.task == "multiclass" else None
    index, values = explanations.top_contributions(contribs, k, codes)
    names = pa.array(spec.features)
    out: dict[str, pa.Array] = {}
    for i in range(k):
        out[explanations.EXPLAIN_FEATURE.format(i + 1)] = pa.DictionaryArray.from_arrays(
            pa.array(index[:, i]), names)
        out[explanations.EXPLAIN_VALUE.format(i + 1)] = pa.array(values[:, i])
    return out


def check_explain(k: int, spec: FeatureSpec) -> None:
    """--explain asks for at most one contribution per feature; checked before any input is
    read or output written."""
    try:
        if k:
            explanations.check_k(k, len(spec.features))
    except ValueError as exc:
        raise ScoringError(str(exc)) from None


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
            self.classes += np.bincount(self.spec.class_codes(raw), minlength=len(self.spec.classes))
            return
        self.total += float(raw.sum(dtype=np.float64))
        self.low, self.high = min(self.low, float(raw.min())), max(self.high, float(raw.max()))
        if self.spec.task == "binary":
            self.classes[1] += int(self.spec.class_codes(raw).sum())

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
                  batch_rows: int = BATCH_ROWS,
                  snowflake_settings: SnowflakeSettings | None = None,
                  explain: int = 0) -> ScoringSummary:
    """Score every batch of the input into the output; all or nothing. With `explain` k, each
    row also gets its k largest SHAP contributions, computed batch by batch."""
    spec = champion.spec
    check_explain(explain, spec)
    source = open_source(input_location, spec, keep, batch_rows=batch_rows,
                         snowflake_settings=snowflake_settings)
    kept = source.kept
    ignored = [c for c in source.columns if c not in spec.features and c not in kept]
    scored_at = datetime.now(UTC)
    stamp = pa.scalar(scored_at, type=pa.timestamp("us", tz="UTC"))
    sink = Sink(output_location, snowflake_settings)
    stats = PredictionStats(spec)
    start = time.perf_counter()
    rows, next_report = 0, 1_000_000
    try:
        for batch in prefetch(source.batches):
            if batch.num_rows == 0:
                continue
            prepared = prepare(batch, spec)
            raw = predict(champion.booster, prepared)
            stats.add(raw)
            n = batch.num_rows
            columns = {c: batch.column(batch.schema.names.index(c)) for c in kept}
            columns.update(prediction_columns(raw, spec))
            if explain:
                columns.update(explanation_columns(champion, prepared.matrix, raw, explain))
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
                          input=source.description, output=sink.location, rows=rows,
                          seconds=round(seconds, 3), rows_per_s=round(rows / seconds, 1),
                          kept=kept, ignored=ignored,
                          scored_at=scored_at.isoformat(timespec="seconds"),
                          distribution=stats.summary())


@step("score-batches")
def score(champion: Champion, input_location: str, output_location: str,
          snowflake: SnowflakeSettings, keep: list[str] | None = None, explain: int = 0
          ) -> ScoringSummary:
    from prefect.logging import get_run_logger

    logger = get_run_logger()
    summary = score_batches(champion, input_location, output_location, keep, logger.info,
                            snowflake_settings=snowflake, explain=explain)
    logger.info(f"{summary.model} v{summary.version}: {summary.rows:,} rows scored in "
                f"{summary.seconds:.1f} s ({summary.rows_per_s:,.0f} rows/s) -> {summary.output}")
    return summary


@step("publish-scoring-summary")
def publish_summary(summary: ScoringSummary) -> None:
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(scoring_markdown(summary),
                             key=artifact_key("batch-scoring", summary.model),
                             description=f"{summary.model}: {summary.rows:,} rows scored")
