import numpy as np
import pandas as pd
import pytest

from tasks.core.errors import DataError
from tasks.reports.validation import validation_markdown
from tasks.training.validate import ensure_valid, validate_frame


def errors_of(df, cfg):
    return validate_frame(df, cfg).errors


def test_clean_data_passes(claims, make_config):
    report = validate_frame(claims, make_config())
    assert report.passed, report.errors
    assert "region" in report.categorical and "claim_amount" in report.features
    assert "event_date" not in report.features and "claim_id" not in report.features
    assert report.classes == ["0", "1"] and sum(report.class_counts.values()) == len(claims)
    assert "Validation report: passed" in validation_markdown(report)


def test_missing_target(claims, make_config):
    errs = errors_of(claims.drop(columns=["is_fraud"]), make_config())
    assert errs and "target column 'is_fraud' not found" in errs[0]


def test_null_target(claims, make_config):
    df = claims.copy()
    df["is_fraud"] = df["is_fraud"].astype(float)
    df.loc[5, "is_fraud"] = np.nan
    assert "target 'is_fraud' has 1 null value(s)" in errors_of(df, make_config())


def test_non_finite_regression_target(claims, make_config):
    df = claims.copy()
    df.loc[3, "settlement_amount"] = np.inf
    errs = errors_of(df, make_config("regression"))
    assert any("'settlement_amount' has non-finite" in e for e in errs)


def test_single_class(claims, make_config):
    df = claims.assign(is_fraud=0)
    errs = errors_of(df, make_config())
    assert any("single class (0)" in e and "'is_fraud'" in e for e in errs)


def test_binary_with_three_classes(claims, make_config):
    df = claims.assign(is_fraud=np.arange(len(claims)) % 3)
    assert any("use task multiclass" in e for e in errors_of(df, make_config()))


def test_empty_data(claims, make_config):
    assert errors_of(claims.iloc[0:0], make_config()) == ["data is empty (0 rows)"]


def test_configured_column_missing(claims, make_config):
    errs = errors_of(claims.drop(columns=["region"]), make_config())
    assert "column 'region' named in categorical is not in the data" in errs


def test_text_in_numeric_feature(claims, make_config):
    df = claims.copy()
    df["claim_amount"] = df["claim_amount"].astype(object)
    df.loc[7, "claim_amount"] = "n/a"
    errs = errors_of(df, make_config())
    assert any("'claim_amount' is numeric but holds text (e.g. 'n/a')" in e for e in errs)


def test_undeclared_text_column(claims, make_config):
    df = claims.assign(notes="free text " + claims.claim_id)
    errs = errors_of(df, make_config())
    assert "column 'notes' holds text but is not listed in categorical" in errs


def test_infinity_in_feature(claims, make_config):
    df = claims.copy()
    df.loc[2, "repair_estimate"] = -np.inf
    assert "column 'repair_estimate' has 1 infinite value(s) (±inf)" in errors_of(df, make_config())


def test_all_null_column(claims, make_config):
    df = claims.assign(vehicle_age=np.nan)
    assert "column 'vehicle_age' is entirely null" in errors_of(df, make_config())


def test_duplicate_column_names(claims, make_config):
    df = pd.concat([claims, claims[["region"]]], axis=1)
    assert errors_of(df, make_config()) == ["duplicate column name 'region'"]


def test_label_leakage(claims, make_config):
    df = claims.assign(fraud_flag_copy=claims.is_fraud * 1.0)
    errs = errors_of(df, make_config())
    assert any("'fraud_flag_copy' looks like a leak of the target" in e for e in errs)


def test_warnings_do_not_fail(claims, make_config):
    df = claims.copy()
    df.loc[:10, "customer_age"] = np.nan
    df = pd.concat([df, df.iloc[:3]], ignore_index=True)
    report = validate_frame(df, make_config())
    assert report.passed
    assert any("'customer_age' has 14 null" in w for w in report.warnings)  # 11 + 3 copied
    assert any("3 duplicate row(s)" in w for w in report.warnings)


def test_ensure_valid_raises_first_error(claims, make_config):
    report = validate_frame(claims.drop(columns=["is_fraud"]), make_config())
    with pytest.raises(DataError, match="validation failed: target column 'is_fraud'"):
        ensure_valid(report)


def test_column_names_too_long_for_tracking_are_found_before_training(claims, make_config):
    """Per-column metric names (psi.<column>, slice.<column>.<value>.<metric>) used to fail
    only after training, when MLflow refused them."""
    long_name = "claim_" + "x" * 260
    errs = errors_of(claims.rename(columns={"claim_amount": long_name}), make_config())
    assert any("is 266 characters" in e and "rename the column" in e for e in errs), errs
    frame = claims.copy()
    frame.loc[frame.index[:3], "region"] = "r" * 260
    errs = errors_of(frame, make_config())
    assert any("slice column 'region' has a value of 260 characters" in e for e in errs), errs
    from tasks.contracts.training import TRACKING_KEY_LIMIT, tracking_key

    assert len(tracking_key("slice", "region", "north", "roc_auc")) < TRACKING_KEY_LIMIT
    assert tracking_key("psi", "odd name/%") == "psi.odd_name_"
