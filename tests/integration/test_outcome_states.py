"""A person's rejection ends the deploy run in the named Failed state `Rejected` (one line, the
exit-code table's name), and calling the flow in-process still raises it for the CLI."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import flows.deploy as deploy
from tasks.contracts.release import SmokeReport
from tasks.core.errors import STATE_EXITS, ApprovalRejected, ExitCode

# whole training or deploy flows per test: `make test` runs this module, the quick subset
# (`make test-fast`) leaves it out (docs/testing.md)
pytestmark = pytest.mark.slow


@pytest.fixture
def rejecting(write_config, monkeypatch):
    """A deploy run whose staging passes and whose approver rejects the version."""

    def reject(**kw):
        raise ApprovalRejected(f"{kw['cfg'].name} v{kw['version']} rejected by alice: not yet")

    monkeypatch.setattr(deploy, "connect", lambda settings: None)
    monkeypatch.setattr(deploy, "judge_proposal",
                        lambda **kw: SimpleNamespace(refusal=None, champion=None))
    monkeypatch.setattr(deploy, "staging", lambda **kw: SmokeReport(passed=True, checks=[]))
    monkeypatch.setattr(deploy, "obtain_approval", reject)
    return write_config("outcome")


def test_a_persons_rejection_ends_the_deploy_run_in_the_named_state_rejected(rejecting):
    state = deploy.deploy_model(rejecting, "1", return_state=True)
    assert state.is_failed() and state.name == "Rejected"
    assert state.message == "outcome v1 rejected by alice: not yet"
    assert STATE_EXITS[state.name] == ExitCode.FAILED
    with pytest.raises(ApprovalRejected, match="rejected by alice"):
        deploy.deploy_model(rejecting, "1")  # in-process: the CLI's one line and exit code
