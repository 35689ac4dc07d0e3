"""The CLI's happy paths: summary table, the up-to-date check, --force through the flow."""

from __future__ import annotations

from typer.testing import CliRunner

from mlops.cli import app
from tests.integration.conftest import versions

runner = CliRunner()


def test_train_twice_is_up_to_date_without_a_second_version(write_config, registry):
    name = write_config("cli-model")
    first = runner.invoke(app, ["train", name])
    assert first.exit_code == 0, first.output
    assert "cli-model" in first.stdout and "passed" in first.stdout

    second = runner.invoke(app, ["train", name])
    assert second.exit_code == 0, second.output
    assert "cli-model: up to date (v1" in second.stdout
    assert "passed (up to date)" in second.stdout

    forced = runner.invoke(app, ["train", name, "--force"])
    assert forced.exit_code == 0, forced.output
    assert "(reused)" in forced.stdout  # the flow itself found the identical version
    assert len(versions(registry(), name)) == 1


def test_several_models_report_each_and_exit_with_the_first_failure(write_config, home):
    ok = write_config("good")
    bad = write_config("too-strict")
    path = home / "configs" / "too-strict.yaml"
    path.write_text(path.read_text().replace("threshold: 0.6", "threshold: 0.9999"))
    result = runner.invoke(app, ["train", ok, bad])
    assert result.exit_code == 3
    table = result.stdout.split("model ")[-1]
    assert "good" in table and "too-strict" in table and "rejected" in table
