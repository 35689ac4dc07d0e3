"""A rejection in a run's logs is its one line: no traceback, no state repr with its data."""

from __future__ import annotations

import logging
import sys

from tasks.core.errors import DeployError, GateRejected
from tasks.core.outcomes import ENGINE_EXIT, OutcomeFilter, install_outcome_filter
from tasks.core.redact import RedactFilter

STATE_REPR = ("Task run failed with state: GateRejected(message='rejected: rmse 3385.8601 misses "
              "the ceiling 1.0', type=FAILED, result=GateDecision(passed=False, metric='rmse', "
              "value=3385.86, checks=[GateCheck(name='floor', passed=False)]))")


def record(msg: str, exc: BaseException | None = None, exc_info=None) -> logging.LogRecord:
    if exc is not None:
        try:
            raise exc
        except type(exc):
            exc_info = sys.exc_info()
    return logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, msg, None,
                             exc_info)


def rendered(rec: logging.LogRecord) -> str:
    for f in (OutcomeFilter(), RedactFilter()):
        assert f.filter(rec)
    return logging.Formatter("%(message)s").format(rec)


def test_the_engines_exit_on_a_gate_rejection_is_one_line(monkeypatch):
    monkeypatch.delenv("MLOPS_DEBUG", raising=False)
    text = rendered(record(ENGINE_EXIT, GateRejected("settlement gate rejected: rmse too high")))
    assert text == "the run ended: GateRejected: settlement gate rejected: rmse too high"


def test_a_persons_rejection_is_one_line(monkeypatch):
    monkeypatch.delenv("MLOPS_DEBUG", raising=False)
    exc = DeployError("fraud v1 rejected by alice: not this one")
    text = rendered(record(f"Encountered exception during execution: {exc!r}", exc))
    assert "Traceback" not in text and "\n" not in text
    assert "fraud v1 rejected by alice: not this one" in text


def test_a_failed_state_repr_loses_its_data(monkeypatch):
    monkeypatch.delenv("MLOPS_DEBUG", raising=False)
    text = rendered(record(STATE_REPR, exc_info=(None, None, None)))
    assert text == ("Task run failed with state GateRejected: rejected: rmse 3385.8601 misses "
                    "the ceiling 1.0")


def test_other_errors_keep_their_traceback_and_debug_keeps_everything(monkeypatch):
    monkeypatch.delenv("MLOPS_DEBUG", raising=False)
    assert "Traceback" in rendered(record("boom", ValueError("a bug")))
    monkeypatch.setenv("MLOPS_DEBUG", "1")
    assert "Traceback" in rendered(record(ENGINE_EXIT, GateRejected("x")))
    assert "GateDecision(" in rendered(record(STATE_REPR, exc_info=(None, None, None)))


def test_installed_first_on_every_handler():
    handler = logging.StreamHandler()
    handler.addFilter(RedactFilter())
    logger = logging.getLogger("tests.outcome-install")
    logger.addHandler(handler)
    try:
        assert install_outcome_filter() >= 1
        assert isinstance(handler.filters[0], OutcomeFilter)
        assert install_outcome_filter() == 0
    finally:
        logger.removeHandler(handler)
