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


def test_every_final_state_name_maps_to_one_code_and_the_help_lists_it():
    from prefect.client.schemas.objects import StateType

    from tasks.core.errors import GATE_REJECTED_STATE, STATE_EXITS

    final = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}
    assert {t.value.title() for t in final} <= set(STATE_EXITS)  # Prefect's default names
    assert STATE_EXITS[GATE_REJECTED_STATE] == ExitCode.GATE_REJECTED
    assert all(isinstance(code, ExitCode) for code in STATE_EXITS.values())
    shown = " ".join(CliRunner().invoke(app, ["--help"]).stdout.split())
    for name in STATE_EXITS:
        assert name in shown, (name, shown)
    assert "3 gate rejected (runs: GateRejected)" in shown


@pytest.mark.parametrize("error", [v for v in vars(errors).values() if isinstance(v, type)
                                   and issubclass(v, errors.MlopsError) and v.state_name])
def test_every_named_outcome_is_in_the_state_table_with_its_errors_code(error):
    from tasks.core.errors import STATE_EXITS

    assert STATE_EXITS[error.state_name] == error.exit_code


def test_an_outcome_error_becomes_its_named_failed_state_and_any_other_error_is_raised():
    from tasks.core.errors import ApprovalRejected, DataError, GateRejected
    from tasks.core.outcomes import outcome_of

    def fails(exc: Exception) -> str:
        raise exc

    gate = outcome_of(fails, exc=GateRejected("fraud gate rejected: auc 0.6 < 0.7"))
    assert gate.is_failed() and gate.name == "GateRejected"
    assert gate.message == "fraud gate rejected: auc 0.6 < 0.7"
    person = outcome_of(fails, exc=ApprovalRejected("fraud v3 rejected by alice: no"))
    assert person.is_failed() and person.name == "Rejected"
    with pytest.raises(ApprovalRejected):
        person.result()  # a flow called in-process raises it: the CLI's exit code
    with pytest.raises(DataError):
        outcome_of(fails, exc=DataError("empty"))
    assert outcome_of(lambda value: value, value="ok") == "ok"


@pytest.mark.parametrize("command", ["train", "run", "ci"])
def test_commands_that_run_flows_print_the_generated_table(command):
    shown = " ".join(CliRunner().invoke(app, [command, "--help"]).stdout.split())
    assert errors.exit_codes_help() in shown, shown
