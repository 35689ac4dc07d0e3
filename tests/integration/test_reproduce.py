"""`mlops reproduce`: a registered version rebuilt from its lineage, compared bit for bit; it
registers nothing and moves no alias, and refuses when the inputs cannot be the same."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mlops.cli import app
from tasks.training.synthetic import generate_claims
from tests.conftest import config_yaml
from tests.integration.conftest import HomeSnapshot, point_at, versions

# whole training or deploy flows per test: `make test` runs this module, the quick subset
# (`make test-fast`) leaves it out (docs/testing.md)
pytestmark = pytest.mark.slow

runner = CliRunner()
REPRO = "repro"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Model `repro` trained once per module through `mlops train` (v1); each test using it
    starts from a copy restored in place (HomeSnapshot)."""
    snapshot = HomeSnapshot(tmp_path_factory.mktemp("reproduce") / "home")
    with pytest.MonkeyPatch.context() as mp:
        point_at(snapshot.base, mp)
        (snapshot.base / "configs" / f"{REPRO}.yaml").write_text(config_yaml(name=REPRO))
        trained = runner.invoke(app, ["train", REPRO])
        assert trained.exit_code == 0, trained.output
        snapshot.take()
    return snapshot


@pytest.fixture
def repro(trained, home, monkeypatch) -> str:
    trained.restore()
    point_at(trained.base, monkeypatch)
    return REPRO


def aliases(reg, name: str) -> dict[str, str]:
    return {k: str(v) for k, v in reg.client.get_registered_model(name).aliases.items()}


def test_a_version_reproduces_bit_for_bit_and_nothing_moves(repro, registry):
    name = repro
    reg = registry()
    before = (len(versions(reg, name)), aliases(reg, name))
    result = runner.invoke(app, ["reproduce", name, "1"])
    assert result.exit_code == 0, result.output
    assert "repro v1: reproduced bit for bit" in result.stdout
    assert "booster: identical" in result.stdout and "differ" not in result.stdout
    assert "timeout_s" not in result.stdout  # the config has none
    assert (len(versions(reg, name)), aliases(reg, name)) == before
    assert before[1] == {"challenger": "1"}


def test_changed_data_file_is_refused_as_data_changed(home, registry):
    data = home / "claims.csv"
    generate_claims(1500, seed=3).to_csv(data, index=False)
    (home / "configs" / "filed.yaml").write_text(
        config_yaml(name="filed", data=f"data: {{source: file, path: '{data}'}}"))
    assert runner.invoke(app, ["train", "filed"]).exit_code == 0
    generate_claims(1500, seed=4).to_csv(data, index=False)  # same name, other rows
    result = runner.invoke(app, ["reproduce", "filed", "1"])
    assert result.exit_code == 1, result.output
    assert "data changed since" in result.stdout and str(data) in result.stdout
    assert "retraining" not in result.stdout  # refused before training
    assert len(versions(registry(), "filed")) == 1


def test_missing_lineage_tags_exit_2(repro, registry):
    name = repro
    reg = registry()
    reg.client.delete_model_version_tag(name, "1", "code_hash")
    result = runner.invoke(app, ["reproduce", name, "1"])
    assert result.exit_code == 2, result.output
    assert "lacks lineage tag(s) code_hash" in result.stderr


def test_a_version_trained_with_a_timeout_says_so(home, registry):
    text = config_yaml(name="timed").replace("max_rounds: 60}", "max_rounds: 60, timeout_s: 300}")
    assert "timeout_s: 300" in text
    (home / "configs" / "timed.yaml").write_text(text)
    assert runner.invoke(app, ["train", "timed"]).exit_code == 0
    result = runner.invoke(app, ["reproduce", "timed", "1"])
    assert "was trained with training.timeout_s=300" in result.stdout, result.output
    assert "depended on the machine's speed" in result.stdout
