"""Asked for an approver without one, `identity_for` (promote, rollback, realign, approve) says
which identity the policy asks for: only a declared policy is told that its identity is
declared."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tasks.core.errors import ApprovalError
from tests.conftest import config_yaml

POLICY = Path(__file__).resolve().parents[2] / "configs" / "policy.yaml"


@pytest.mark.parametrize("identity", ["declared", "gitlab-environment"])
def test_missing_approver_names_the_policys_identity(identity, tmp_path):
    from mlops.release import identity_for
    from tasks.core.config import load_config
    from tasks.core.runtime import Runtime
    from tasks.core.settings import Settings

    policy = yaml.safe_load(POLICY.read_text())
    policy["environments"]["production"]["approval"]["identity"] = identity
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "fraud.yaml").write_text(config_yaml(name="fraud"))
    runtime = Runtime(Settings.from_env({  # no approver token, no GitLab
        "MLOPS_POLICY": str(tmp_path / "policy.yaml"), "MLOPS_HOME": str(tmp_path / "state"),
        "MLOPS_CONFIG_DIR": str(tmp_path / "configs")}))
    with pytest.raises(ApprovalError) as refused:
        identity_for(load_config("fraud", tmp_path / "configs"), None, runtime)
    said = str(refused.value)
    assert ("identity is declared" in said) == (identity == "declared"), said
    if identity != "declared":
        assert "approvals come from identity gitlab-environment" in said
