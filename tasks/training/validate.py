"""Validate stage: schema, target, nulls, infinities, duplicates and leakage, as a report."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from tasks.contracts.training import (
    TRACKING_KEY_LIMIT,
    ColumnSummary,
    ValidationReport,
    tracking_key,
)
from tasks.core.config import ModelConfig
from tasks.core.errors import DataError
from tasks.core.steps import step
from tasks.core.tasktypes import task_type
from tasks.training.checks import ColumnFacts, TableFacts

MIN_ROWS = 30
LEAK_CORRELATION = 0.98
NUMERIC_SHARE = 0.9


def _target_checks(facts: TableFacts, cfg: ModelConfig, errors: list[str]
                   ) -> tuple[list[str], dict]:
    tt = task_type(cfg.task)
    if facts.target_nulls:
        errors.append(f"target '{cfg.target}' has {facts.target_nulls} null value(s)")
    if cfg.task == "regression":
        if facts.target_not_numbers:
            errors.append(f"target '{cfg.target}' must be numeric for a regression task")
        elif facts.target_non_finite:
            errors.append(f"target '{cfg.target}' has non-finite values (inf)")
        return [], {}
    if facts.target_float and facts.target_non_finite:
        errors.append(f"target '{cfg.target}' has non-finite values (inf)")
        return [], {}
    counts = dict(sorted(facts.class_counts.items()))
    classes = list(counts)
    if len(classes) < tt.min_classes:
        only = classes[0] if classes else "none"
        errors.append(
            f"target '{cfg.target}' has a single class ({only}); a {cfg.task} task needs at least 2"
        )
    elif tt.max_classes and len(classes) > tt.max_classes:
        errors.append(
            f"target '{cfg.target}' has {len(classes)} classes; use task multiclass for more than 2"
        )
    else:
        fewest = min(counts, key=lambda c: (counts[c], c))
        if counts[fewest] < 3:
            errors.append(
                f"target '{cfg.target}' class '{fewest}' has only {counts[fewest]} row(s); "
                "each class needs at least 3 to split train/validation/test")
    return classes, {k: int(v) for k, v in counts.items()}


def validate_frame(df: pd.DataFrame, cfg: ModelConfig) -> ValidationReport:
    """Check the data against the model contract; errors name the column and the problem."""
    return validate_frames([df], cfg)


def validate_frames(frames: Iterable[pd.DataFrame], cfg: ModelConfig) -> ValidationReport:
    """Check a table given as frames (batches of bounded size) against the model contract,
    accumulating over the batches: the same findings as on the whole table at once."""
    facts = TableFacts(cfg.target, set(cfg.categorical or []) | set(cfg.slices), cfg.slices)
    for frame in frames:
        facts.add(frame)
        if not facts.facts:  # the columns alone fail it: no need to read on
            break
    return _report(facts, cfg)


def _report(facts: TableFacts, cfg: ModelConfig) -> ValidationReport:
    errors = _shape_errors(facts, cfg)
    warnings: list[str] = []
    if errors:
        return ValidationReport(rows=facts.rows, target=cfg.target, features=[],
                                categorical=[], classes=[], class_counts={}, errors=errors,
                                warnings=warnings, columns=[])
    if facts.rows < MIN_ROWS:
        errors.append(f"only {facts.rows} rows; at least {MIN_ROWS} are needed to train and test")

    classes, class_counts = _target_checks(facts, cfg, errors)

    features: list[str] = []
    categorical: list[str] = []
    columns: list[ColumnSummary] = []
    categories: dict[str, list[str]] = {}
    for col, f in facts.facts.items():
        summary = _summary(col, f, cfg)
        columns.append(summary)
        is_cat = _feature_checks(col, f, summary, facts.rows, cfg, errors, warnings) \
            if summary.role == "feature" else None
        if is_cat is None:
            continue
        if is_cat:
            categorical.append(col)
            categories[col] = sorted({str(v) for v in f.values})
        features.append(col)

    if not errors and not features:
        errors.append("no feature columns left after exclude")
    if not errors:
        errors.extend(_tracking_key_problems(facts, cfg, features))
    if not errors:
        _leakage(facts, features, categorical, classes, errors)
    dups = facts.duplicate_rows()
    if dups:
        warnings.append(f"{dups} duplicate row(s)")
    if class_counts and min(class_counts.values()) / facts.rows < 0.01:
        warnings.append("minority class is below 1% of rows")
    return ValidationReport(rows=facts.rows, target=cfg.target, features=features,
                            categorical=categorical, classes=classes, class_counts=class_counts,
                            errors=errors, warnings=warnings, columns=columns,
                            categories=categories)


def _shape_errors(facts: TableFacts, cfg: ModelConfig) -> list[str]:
    """What stops validation before it looks at values: no rows or columns, a duplicate column
    name, no target column, a column named in the config that is not in the data."""
    columns_in = facts.columns or []
    if facts.rows == 0 or not columns_in:
        return ["data is empty (0 rows)" if facts.rows == 0 else "data has no columns"]
    dup = pd.Index(columns_in)[pd.Index(columns_in).duplicated()]
    if len(dup):
        return [f"duplicate column name '{dup[0]}'"]
    if cfg.target not in columns_in:
        return [f"target column '{cfg.target}' not found in data "
                f"(columns: {', '.join(columns_in[:12])})"]
    return [f"column '{col}' named in {key} is not in the data"
            for key in ("exclude", "categorical", "slices")
            for col in getattr(cfg, key) or [] if col not in columns_in]


def _summary(col: str, f: ColumnFacts, cfg: ModelConfig) -> ColumnSummary:
    role = "target" if col == cfg.target else "excluded" if col in cfg.exclude else "feature"
    if role == "feature" and f.datetime:
        role = "date (not a feature)"
    summary = ColumnSummary(name=col, dtype=f.dtype, role=role, nulls=f.nulls, unique=f.unique)
    if f.numeric and f.any_finite:
        summary.min, summary.max = float(f.low), float(f.high)
    return summary


def _feature_checks(col: str, f: ColumnFacts, summary: ColumnSummary, rows: int,
                    cfg: ModelConfig, errors: list[str], warnings: list[str]) -> bool | None:
    """One feature column's problems: None when it cannot be used (the reason is in errors),
    else whether it is categorical."""
    if summary.nulls == rows:
        errors.append(f"column '{col}' is entirely null")
        return None
    declared = set(cfg.categorical or [])
    share = 1 - f.not_numbers / f.present if f.present else 0.0
    is_cat = col in declared or (cfg.categorical is None and f.text)
    if is_cat:
        summary.role = "categorical feature"
        if col not in declared and share >= NUMERIC_SHARE:
            errors.append(f"column '{col}' is numeric but holds text (e.g. {f.example!r})")
            return None
        if summary.unique > 1000:
            warnings.append(f"column '{col}' has {summary.unique} categories")
    elif f.text:
        errors.append(f"column '{col}' is numeric but holds text (e.g. {f.example!r})"
                      if share >= NUMERIC_SHARE
                      else f"column '{col}' holds text but is not listed in categorical")
        return None
    elif f.numeric and f.inf:
        errors.append(f"column '{col}' has {f.inf} infinite value(s) (±inf)")
        return None
    if summary.nulls:
        warnings.append(f"column '{col}' has {summary.nulls} null value(s) "
                        f"({summary.nulls / rows:.1%}); XGBoost treats them as missing")
    if summary.unique <= 1:
        warnings.append(f"column '{col}' is constant")
    return bool(is_cat)


def _tracking_key_problems(facts: TableFacts, cfg: ModelConfig, features: list[str]
                           ) -> list[str]:
    """Column names (and slice values) that would make metric names longer than MLflow takes:
    found here, before anything trains, rather than when the results are logged."""
    metric = max(task_type(cfg.task).metrics, key=len)
    problems = []
    for col in features:
        key = tracking_key("psi", col)
        if len(key) > TRACKING_KEY_LIMIT:
            problems.append(f"column name '{col[:40]}…' is {len(col)} characters: metric names "
                            f"such as {key[:30]}… would exceed MLflow's {TRACKING_KEY_LIMIT}; "
                            "rename the column")
    for col in cfg.slices:
        longest = facts.facts[col].longest
        key = tracking_key("slice", col, longest, metric)
        if len(key) > TRACKING_KEY_LIMIT:
            problems.append(f"slice column '{col[:40]}' has a value of {len(longest)} characters: "
                            f"per-slice metric names would exceed MLflow's {TRACKING_KEY_LIMIT}; "
                            "shorten its values or drop it from slices")
    return problems


def _leakage(facts: TableFacts, features, categorical, classes, errors) -> None:
    target = facts.facts[facts.target]
    if classes and len(classes) != 2 and not target.numeric and target.dtype != "bool":
        return  # text classes have no order to correlate with
    codes = {c: float(i) for i, c in enumerate(classes)} if classes else None
    correlations = facts.correlations(codes)
    for col in features:
        if col in categorical:
            continue
        corr = correlations.get(col)
        if corr is not None and corr >= LEAK_CORRELATION:
            errors.append(f"column '{col}' looks like a leak of the target "
                          f"(correlation {corr:.3f}); exclude it")


def ensure_valid(report: ValidationReport) -> ValidationReport:
    if report.errors:
        extra = f" (and {len(report.errors) - 1} more)" if len(report.errors) > 1 else ""
        raise DataError(f"validation failed: {report.errors[0]}{extra}")
    return report


@step("validate")
def validate(df: pd.DataFrame | None, cfg: ModelConfig, table=None) -> ValidationReport:
    """Validate the data (a frame, or a BatchTable read in one pass of batches); the report is
    returned even when it fails, the flow decides."""
    if table is not None:
        return validate_frames(table.frames(what="validation"), cfg)
    return validate_frame(df, cfg)
