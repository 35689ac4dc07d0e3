"""`mlops promote` without --as says which identity the policy asks for: only a declared policy is
told that its identity is declared."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import config_yaml

POLICY = Path(__file__).resolve().parents[2] / "configs" / "policy.yaml"


@pytest.mark.parametrize("identity", ["declared", "gitlab-environment"])
def test_missing_approver_names_the_policys_identity(identity, tmp_path, monkeypatch):
    from mlops.cli import app

    policy = yaml.safe_load(POLICY.read_text())
    policy["environments"]["production"]["approval"]["identity"] = identity
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "fraud.yaml").write_text(config_yaml(name="fraud"))
    for key in ("MLOPS_APPROVER_TOKEN", "CI_SERVER_URL", "CI_PROJECT_ID"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLOPS_POLICY", str(tmp_path / "policy.yaml"))
    monkeypatch.setenv("MLOPS_CONFIG_DIR", str(tmp_path / "configs"))
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "state"))
    result = CliRunner().invoke(app, ["promote", "fraud", "--version", "1"])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert ("identity is declared" in said) == (identity == "declared"), said
    if identity != "declared":
        assert "approvals come from identity gitlab-environment" in said
