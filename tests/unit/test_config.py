import pytest

from tasks.core.config import load_config, parse_config
from tasks.core.errors import ConfigError
from tests.conftest import config_yaml

ISSUE_EXAMPLE = """
name: fraud                      # registered model name
task: binary                     # binary | multiclass | regression
target: is_fraud
exclude: [claim_id]              # columns never used as features
categorical: [region]            # optional; otherwise inferred from dtype
slices: [region]                 # optional; metrics and gate per slice
data:
  source: synthetic              # synthetic | file | snowflake
  rows: 50000                    # synthetic only
  path: data/claims.parquet      # file only: .csv or .parquet, local path or fsspec URL
  query: "select * from claims"  # snowflake only
training:
  n_trials: 20
  timeout_s: 600                 # optional
  seed: 42
gate:
  metric: roc_auc
  threshold: 0.80
  max_regression: 0.01
  slice_max_regression: 0.03
registry:
  tags: {classification: internal, department: claims}
  required_tags: [classification, department]
"""


def test_issue_example_parses_with_every_key_as_written():
    cfg = parse_config(ISSUE_EXAMPLE)
    assert cfg.name == "fraud" and cfg.task == "binary" and cfg.exclude == ["claim_id"]
    assert cfg.data.rows == 50000 and cfg.data.path == "data/claims.parquet"
    assert cfg.training.timeout_s == 600 and cfg.gate.slice_max_regression == 0.03
    assert cfg.registry.required_tags == ["classification", "department"]


@pytest.mark.parametrize("name", ["fraud", "damage", "settlement"])
def test_reference_configs_load(name):
    from pathlib import Path

    cfg = load_config(name, Path("configs/models"))
    assert cfg.name == name


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="unknown key 'training.n_trails'"):
        parse_config(config_yaml().replace("n_trials", "n_trails"))


def test_unknown_top_level_key_is_named():
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        parse_config(config_yaml() + "colour: red\n")


def test_malformed_yaml_gives_line():
    with pytest.raises(ConfigError, match=r"malformed YAML at line \d+"):
        parse_config("name: x\ntask: [binary\n", origin="x.yaml")


def test_missing_required_key():
    with pytest.raises(ConfigError, match="missing required key 'target'"):
        parse_config("name: x\ntask: binary\ngate: {metric: roc_auc, threshold: 0.5}\n")


def test_gate_metric_must_fit_task():
    with pytest.raises(ConfigError, match="does not fit task regression"):
        parse_config(config_yaml("regression").replace("metric: rmse", "metric: roc_auc"))


def test_required_compliance_tags_must_be_present():
    text = config_yaml().replace("department: claims}", "owner: x}")
    with pytest.raises(ConfigError, match="lacks required compliance tag"):
        parse_config(text)


def test_file_source_needs_path():
    with pytest.raises(ConfigError, match="data.path is required"):
        parse_config(config_yaml(data="data: {source: file}"))


def test_unknown_model_name_lists_known(tmp_path):
    (tmp_path / "a.yaml").write_text(config_yaml(name="a"))
    with pytest.raises(ConfigError, match=r"no model named 'b'.*known: a"):
        load_config("b", tmp_path)


def test_config_hash_changes_with_content():
    a = parse_config(config_yaml())
    b = parse_config(config_yaml(n_trials=3))
    assert a.config_hash() != b.config_hash()
    assert a.config_hash() == parse_config(config_yaml()).config_hash()


def test_a_key_given_twice_is_an_error_not_a_silent_overwrite():
    from tests.conftest import config_yaml

    text = config_yaml() + "training: {n_trials: 50}\n"
    with pytest.raises(ConfigError, match=r"malformed YAML at line \d+.*key 'training' appears twice"):
        parse_config(text, origin="fraud.yaml")
