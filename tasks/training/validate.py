"""Validate stage: schema, target, nulls, infinities, duplicates and leakage, as a report."""

from __future__ import annotations

import numpy as np
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

MIN_ROWS = 30
LEAK_CORRELATION = 0.98
NUMERIC_SHARE = 0.9


def _numeric_share(values: pd.Series) -> tuple[float, str | None]:
    present = values.dropna()
    if present.empty:
        return 0.0, None
    parsed = pd.to_numeric(present, errors="coerce")
    bad = present[parsed.isna()]
    return 1 - len(bad) / len(present), (str(bad.iloc[0]) if len(bad) else None)


def _target_checks(df: pd.DataFrame, cfg: ModelConfig, errors: list[str]) -> tuple[list[str], dict]:
    y = df[cfg.target]
    tt = task_type(cfg.task)
    nulls = int(y.isna().sum())
    if nulls:
        errors.append(f"target '{cfg.target}' has {nulls} null value(s)")
    if cfg.task == "regression":
        numeric = pd.to_numeric(y, errors="coerce")
        if numeric.isna().sum() > nulls:
            errors.append(f"target '{cfg.target}' must be numeric for a regression task")
        elif not np.isfinite(numeric.dropna()).all():
            errors.append(f"target '{cfg.target}' has non-finite values (inf)")
        return [], {}
    if pd.api.types.is_float_dtype(y) and not np.isfinite(y.dropna()).all():
        errors.append(f"target '{cfg.target}' has non-finite values (inf)")
        return [], {}
    counts = y.dropna().astype(str).value_counts().sort_index()
    classes = [str(c) for c in counts.index]
    if len(classes) < tt.min_classes:
        only = classes[0] if classes else "none"
        errors.append(
            f"target '{cfg.target}' has a single class ({only}); a {cfg.task} task needs at least 2"
        )
    elif tt.max_classes and len(classes) > tt.max_classes:
        errors.append(
            f"target '{cfg.target}' has {len(classes)} classes; use task multiclass for more than 2"
        )
    elif counts.min() < 3:
        errors.append(
            f"target '{cfg.target}' class '{counts.idxmin()}' has only {counts.min()} row(s); "
            "each class needs at least 3 to split train/validation/test"
        )
    return classes, {k: int(v) for k, v in counts.items()}


def _encoded_target(y: pd.Series, classes: list[str]) -> np.ndarray | None:
    if not classes:
        return pd.to_numeric(y, errors="coerce").to_numpy(dtype=float)
    if len(classes) == 2 or pd.api.types.is_numeric_dtype(y):
        return y.astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=float)
    return None


def validate_frame(df: pd.DataFrame, cfg: ModelConfig) -> ValidationReport:
    """Check the data against the model contract; errors name the column and the problem."""
    errors: list[str] = []
    warnings: list[str] = []

    def early() -> ValidationReport:
        return ValidationReport(rows=len(df), target=cfg.target, features=[], categorical=[],
                                classes=[], class_counts={}, errors=errors, warnings=warnings,
                                columns=[])

    if df.shape[0] == 0 or df.shape[1] == 0:
        errors.append("data is empty (0 rows)" if df.shape[0] == 0 else "data has no columns")
        return early()
    dup = df.columns[df.columns.duplicated()]
    if len(dup):
        errors.append(f"duplicate column name '{dup[0]}'")
        return early()
    if cfg.target not in df.columns:
        errors.append(f"target column '{cfg.target}' not found in data "
                      f"(columns: {', '.join(map(str, df.columns[:12]))})")
        return early()
    for key in ("exclude", "categorical", "slices"):
        for col in getattr(cfg, key) or []:
            if col not in df.columns:
                errors.append(f"column '{col}' named in {key} is not in the data")
    if errors:
        return early()
    if len(df) < MIN_ROWS:
        errors.append(f"only {len(df)} rows; at least {MIN_ROWS} are needed to train and test")

    classes, class_counts = _target_checks(df, cfg, errors)

    features: list[str] = []
    categorical: list[str] = []
    columns: list[ColumnSummary] = []
    declared = set(cfg.categorical or [])
    for col in df.columns:
        s = df[col]
        role = "target" if col == cfg.target else "excluded" if col in cfg.exclude else "feature"
        if role == "feature" and pd.api.types.is_datetime64_any_dtype(s):
            role = "date (not a feature)"
        is_cat = role == "feature" and (
            col in declared
            or (cfg.categorical is None and not pd.api.types.is_numeric_dtype(s)
                and not pd.api.types.is_bool_dtype(s))
        )
        summary = ColumnSummary(name=str(col), dtype=str(s.dtype), role=role,
                                nulls=int(s.isna().sum()), unique=int(s.nunique(dropna=True)))
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s) and s.notna().any():
            finite = s[np.isfinite(s.astype(float))]
            if len(finite):
                summary.min, summary.max = float(finite.min()), float(finite.max())
        columns.append(summary)
        if role != "feature":
            continue
        if summary.nulls == len(s):
            errors.append(f"column '{col}' is entirely null")
            continue
        if is_cat:
            summary.role = "categorical feature"
            share, example = _numeric_share(s)
            if col not in declared and share >= NUMERIC_SHARE:
                errors.append(f"column '{col}' is numeric but holds text (e.g. {example!r})")
                continue
            if summary.unique > 1000:
                warnings.append(f"column '{col}' has {summary.unique} categories")
            categorical.append(col)
        elif not pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            share, example = _numeric_share(s)
            if share >= NUMERIC_SHARE:
                errors.append(f"column '{col}' is numeric but holds text (e.g. {example!r})")
            else:
                errors.append(f"column '{col}' holds text but is not listed in categorical")
            continue
        elif not pd.api.types.is_bool_dtype(s):
            inf = int(np.isinf(s.astype(float)).sum())
            if inf:
                errors.append(f"column '{col}' has {inf} infinite value(s) (±inf)")
                continue
        if summary.nulls:
            warnings.append(f"column '{col}' has {summary.nulls} null value(s) "
                            f"({summary.nulls / len(s):.1%}); XGBoost treats them as missing")
        if summary.unique <= 1:
            warnings.append(f"column '{col}' is constant")
        features.append(col)

    if not errors and not features:
        errors.append("no feature columns left after exclude")
    if not errors:
        errors.extend(_tracking_key_problems(df, cfg, features))
    if not errors:
        _leakage(df, cfg, features, categorical, classes, errors)
    dups = int(df.duplicated().sum())
    if dups:
        warnings.append(f"{dups} duplicate row(s)")
    if class_counts and min(class_counts.values()) / len(df) < 0.01:
        warnings.append("minority class is below 1% of rows")
    return ValidationReport(rows=len(df), target=cfg.target, features=features,
                            categorical=categorical, classes=classes, class_counts=class_counts,
                            errors=errors, warnings=warnings, columns=columns)


def _tracking_key_problems(df: pd.DataFrame, cfg: ModelConfig, features: list[str]) -> list[str]:
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
        values = df[col].astype("string").fillna("<null>").unique()
        longest = max((str(v) for v in values), key=len, default="")
        key = tracking_key("slice", col, longest, metric)
        if len(key) > TRACKING_KEY_LIMIT:
            problems.append(f"slice column '{col[:40]}' has a value of {len(longest)} characters: "
                            f"per-slice metric names would exceed MLflow's {TRACKING_KEY_LIMIT}; "
                            "shorten its values or drop it from slices")
    return problems


def _leakage(df, cfg, features, categorical, classes, errors) -> None:
    y = _encoded_target(df[cfg.target], classes)
    if y is None:
        return
    for col in features:
        if col in categorical:
            continue
        x = df[col].astype(float).to_numpy()
        mask = ~np.isnan(x) & ~np.isnan(y)
        if mask.sum() < 3 or np.std(x[mask]) == 0 or np.std(y[mask]) == 0:
            continue
        corr = abs(float(np.corrcoef(x[mask], y[mask])[0, 1]))
        if corr >= LEAK_CORRELATION:
            errors.append(f"column '{col}' looks like a leak of the target "
                          f"(correlation {corr:.3f}); exclude it")


def ensure_valid(report: ValidationReport) -> ValidationReport:
    if report.errors:
        extra = f" (and {len(report.errors) - 1} more)" if len(report.errors) > 1 else ""
        raise DataError(f"validation failed: {report.errors[0]}{extra}")
    return report


@step("validate")
def validate(df: pd.DataFrame, cfg: ModelConfig) -> ValidationReport:
    """Validate the data; the report is returned even when it fails, the flow decides."""
    return validate_frame(df, cfg)
