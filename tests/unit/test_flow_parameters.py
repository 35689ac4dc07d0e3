"""The run form people meet in the Prefect UI: every flow parameter described, `model` a choice
of the configured models (the schema `prefect deploy` sends to the server)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.utilities.callables import parameter_schema

from flows.approval_expiry import approval_expiry
from flows.deploy import deploy_model
from flows.monitoring import monitoring
from flows.notebook import notebook_training
from flows.scoring import batch_scoring
from flows.training import training_pipeline

REPO = Path(__file__).resolve().parents[2]
FLOWS = [training_pipeline, deploy_model, batch_scoring, monitoring, notebook_training,
         approval_expiry]


@pytest.mark.parametrize("flow", FLOWS, ids=lambda f: f.name)
def test_every_parameter_has_a_description(flow):
    properties = parameter_schema(flow).model_dump()["properties"]
    assert properties
    missing = [name for name, prop in properties.items() if not prop.get("description")]
    assert not missing, f"{flow.name}: no description for {missing} (docstring Args:)"


@pytest.mark.parametrize("flow", [training_pipeline, deploy_model, batch_scoring, monitoring],
                         ids=lambda f: f.name)
def test_model_is_a_choice_of_the_configured_models(flow):
    configured = sorted(p.stem for p in (REPO / "configs" / "models").glob("*.yaml"))
    model = parameter_schema(flow).model_dump()["properties"]["model"]
    assert model["enum"] == configured and model["type"] == "string"
    assert "configs/models" in model["description"]


def test_in_process_calls_are_not_limited_to_the_list():
    """A YAML path or a test's own config still reaches load_config (which judges it)."""
    from pydantic import TypeAdapter

    from tasks.core.parameters import ModelName

    assert TypeAdapter(ModelName).validate_python("configs/extra/x.yaml") == "configs/extra/x.yaml"


def test_configured_models_follow_the_config_dir_setting(tmp_path):
    """The run form's choice is the YAML files of MLOPS_CONFIG_DIR, whatever else is set."""
    from tasks.core.settings import configured_models

    for name in ("zeta", "alpha"):
        (tmp_path / f"{name}.yaml").write_text("name: x\n")
    (tmp_path / "notes.txt").write_text("not a model\n")
    env = {"MLOPS_CONFIG_DIR": str(tmp_path), "MLOPS_DEVICE": "not-a-device"}
    assert configured_models(env) == ["alpha", "zeta"]
    assert configured_models({"MLOPS_CONFIG_DIR": str(tmp_path / "absent")}) == []
