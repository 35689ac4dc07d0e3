"""Exit codes come from one table (tasks/core/errors.py): the errors, the drift verdict and the
top-level help all read it."""

from __future__ import annotations

from typing import get_args

import pytest
from typer.testing import CliRunner

from mlops.cli import app
from tasks.contracts.batch import DriftReport
from tasks.core import errors
from tasks.core.errors import DRIFT_EXITS, EXIT_MEANINGS, ExitCode


def test_every_code_has_a_meaning():
    assert list(EXIT_MEANINGS) == list(ExitCode)


def test_the_top_level_help_lists_every_code():
    shown = " ".join(CliRunner().invoke(app, ["--help"]).stdout.split())
    for code, meaning in EXIT_MEANINGS.items():
        assert f"{int(code)} {meaning}" in shown, (code, shown)
    assert "4 drift" in shown


@pytest.mark.parametrize("error", [v for v in vars(errors).values()
                                   if isinstance(v, type) and issubclass(v, errors.MlopsError)])
def test_every_error_exits_with_a_code_of_the_table(error):
    assert isinstance(error.exit_code, ExitCode), error


def test_every_drift_verdict_has_a_code():
    assert set(DRIFT_EXITS) == set(get_args(DriftReport.model_fields["verdict"].annotation))
    assert DRIFT_EXITS == {"no-drift": 0, "drift": 4, "insufficient": 2}
