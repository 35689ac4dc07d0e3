"""Every bad input: exit 2 (1 for the tracking server), one line naming the problem, no version."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mlops.cli import app
from tasks.training.synthetic import generate_claims
from tests.conftest import config_yaml
from tests.integration.conftest import versions

runner = CliRunner()


def corrupt(kind: str) -> pd.DataFrame:
    df = generate_claims(400, seed=5)
    if kind == "missing-target":
        return df.drop(columns=["is_fraud"])
    if kind == "null-target":
        return df.assign(is_fraud=df.is_fraud.astype(float).where(df.index != 4))
    if kind == "inf-target":
        return df.assign(is_fraud=df.is_fraud.astype(float).where(df.index != 4, np.inf))
    if kind == "single-class":
        return df.assign(is_fraud=0)
    if kind == "empty":
        return df.iloc[0:0]
    if kind == "configured-column-missing":
        return df.drop(columns=["region"])
    if kind == "text-in-numeric":
        out = df.assign(claim_amount=df.claim_amount.astype(object))
        out.loc[9, "claim_amount"] = "unknown"
        return out
    if kind == "inf-feature":
        return df.assign(repair_estimate=df.repair_estimate.where(df.index != 3, np.inf))
    if kind == "all-null-column":
        return df.assign(vehicle_age=np.nan)
    raise ValueError(kind)


CASES = {
    "missing-target": "target column 'is_fraud' not found",
    "null-target": "target 'is_fraud' has 1 null value(s)",
    "inf-target": "target 'is_fraud' has non-finite values",
    "single-class": "target 'is_fraud' has a single class (0)",
    "empty": "data is empty (0 rows)",
    "configured-column-missing": "column 'region' named in categorical is not in the data",
    "text-in-numeric": "column 'claim_amount' is numeric but holds text (e.g. 'unknown')",
    "inf-feature": "column 'repair_estimate' has 1 infinite value(s)",
    "all-null-column": "column 'vehicle_age' is entirely null",
}


def run_cli(*args: str):
    return runner.invoke(app, list(args))


def assert_one_line(result, code: int, needle: str) -> None:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize("kind", sorted(CASES))
def test_bad_data_exits_2_and_registers_nothing(home, registry, kind):
    data = home / f"{kind}.csv"
    corrupt(kind).to_csv(data, index=False)
    (home / "configs" / "bad.yaml").write_text(
        config_yaml(name="bad", data=f"data: {{source: file, path: '{data}'}}"))
    result = run_cli("train", "bad")
    assert_one_line(result, 2, CASES[kind])
    assert versions(registry(), "bad") == []
    report = home / "state" / "reports" / "bad" / "validation.md"
    assert "FAILED" in report.read_text()


def test_duplicate_column_names(home, registry):
    data = home / "dup.csv"
    df = generate_claims(100)
    df.to_csv(data, index=False, header=[*df.columns[:-1], "region"])
    (home / "configs" / "dup.yaml").write_text(
        config_yaml(name="dup", data=f"data: {{source: file, path: '{data}'}}"))
    assert_one_line(run_cli("train", "dup"), 2, "duplicate column name 'region'")
    assert versions(registry(), "dup") == []


def test_data_file_that_does_not_exist(home, registry):
    (home / "configs" / "gone.yaml").write_text(
        config_yaml(name="gone", data=f"data: {{source: file, path: '{home}/nope.parquet'}}"))
    assert_one_line(run_cli("train", "gone"), 2, f"data file {home}/nope.parquet does not exist")
    assert versions(registry(), "gone") == []


def test_malformed_yaml(home):
    (home / "configs" / "broken.yaml").write_text("name: broken\ntask: [binary\n")
    assert_one_line(run_cli("train", "broken"), 2, "malformed YAML at line")


def test_unknown_config_key(home):
    (home / "configs" / "typo.yaml").write_text(config_yaml(name="typo").replace("slices",
                                                                                 "slicez"))
    assert_one_line(run_cli("train", "typo"), 2, "unknown key 'slicez'")
    assert_one_line(run_cli("check-config", str(home / "configs" / "typo.yaml")), 2,
                    "unknown key 'slicez'")


def test_unreachable_tracking_server(home, monkeypatch):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://user:pw@127.0.0.1:{port}")
    monkeypatch.setenv("MLOPS_TRACKING_RETRIES", "2")
    (home / "configs" / "ok.yaml").write_text(config_yaml(name="ok"))
    result = run_cli("train", "ok")
    assert_one_line(result, 1, "is unreachable after 2 attempts")
    assert "pw" not in result.stderr


def test_gate_rejection_exits_3(home, registry):
    (home / "configs" / "high.yaml").write_text(
        config_yaml(name="high").replace("threshold: 0.6", "threshold: 0.9999"))
    result = run_cli("train", "high")
    assert_one_line(result, 3, "high gate rejected: roc_auc")
    assert versions(registry(), "high") == []
    assert "high" in result.stdout and "rejected" in result.stdout  # the summary table


def test_generate_and_models(home):
    out = home / "g.parquet"
    result = run_cli("generate", "--rows", "120", "--drift", "0.5", "--output", str(out))
    assert result.exit_code == 0 and len(pd.read_parquet(out)) == 120
    (home / "configs" / "a.yaml").write_text(config_yaml(name="a"))
    listing = run_cli("models")
    assert listing.exit_code == 0 and "a " in listing.stdout and "binary" in listing.stdout
    bad = run_cli("generate", "--rows", "5", "--output", str(home / "x.txt"))
    assert_one_line(bad, 2, "output must be .parquet, .csv")


def test_gitlab_mlflow_api_without_a_token_is_refused_before_training(home, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI",
                       "https://oauth2:glpat-s3cret@gitlab.example.com/api/v4/projects/42/ml/mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    (home / "configs" / "ok.yaml").write_text(config_yaml(name="ok"))
    claims = home / "a.parquet"  # an input that exists: the missing token is what is refused
    generate_claims(50, seed=1).to_parquet(claims)
    for command in (["train", "ok"],
                    ["score", "ok", "--input", str(claims), "--output", str(home / "b.csv")]):
        result = run_cli(*command)
        assert_one_line(result, 2, "is GitLab's MLflow API: set MLFLOW_TRACKING_TOKEN")
        assert "glpat-s3cret" not in result.stderr + result.stdout
