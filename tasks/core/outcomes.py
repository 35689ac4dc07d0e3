"""Our own errors are outcomes with one-line messages (a gate's rejection, a person's, a refused
promotion): in a run's logs they read as that line, never as a traceback or as the repr of a
state with its data (`GateRejected(message=…, result=GateDecision(…))`). MLOPS_DEBUG=1 keeps
everything. On every handler of mlops/logging.yml (the CLI and the local stack's workers) and
installed by the pull step for any other worker's flow runs, before the redaction filter. A
flow ends in the named Failed state of such an outcome (`outcome_of`), which CI maps to an exit
code by its name (errors.STATE_EXITS)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from tasks.core.errors import MlopsError
from tasks.core.settings import debug_enabled

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

R = TypeVar("R")

ENGINE_EXIT = "Engine execution exited with unexpected exception"
_STATE_REPR = re.compile(r"^(?P<lead>.*?with state): (?P<name>\w+)\(message=(?P<q>['\"])"
                         r"(?P<message>.*?)(?P=q), type=\w+, result=.*\)$", re.S)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


class OutcomeFilter(logging.Filter):
    """Rewrites records about our errors to one line; lets every other record through as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        if debug_enabled():
            return True
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, MlopsError):
            if record.msg == ENGINE_EXIT:  # the run's final state already says why
                record.msg = f"the run ended: {one_line(exc)}"
            else:
                record.msg = f"{record.getMessage()}: {one_line(exc)}" if (
                    str(exc) not in record.getMessage()) else record.getMessage()
            record.args, record.exc_info, record.exc_text = None, None, None
            return True
        if isinstance(record.msg, str) and "with state: " in record.msg and "result=" in record.msg:
            found = _STATE_REPR.match(record.msg)
            if found:
                record.msg = f"{found['lead']} {found['name']}: {found['message']}"
                record.args = None
                if record.exc_info and record.exc_info[0] is None:
                    record.exc_info = None  # exc_info=True outside an except block
        return True


def install_outcome_filter() -> int:
    """Put an OutcomeFilter first on every handler configured in this process (idempotent)."""
    loggers = [logging.getLogger(), *(logger for logger in logging.Logger.manager.loggerDict
                                      .values() if isinstance(logger, logging.Logger))]
    added = 0
    for handler in {h for logger in loggers for h in logger.handlers}:
        if not any(isinstance(f, OutcomeFilter) for f in handler.filters):
            handler.filters.insert(0, OutcomeFilter())
            added += 1
    return added


def outcome_of(fn: Callable[..., R], **kwargs: Any) -> R | State[Any]:
    """What `fn` returns, or, when it raises an outcome (an error with a `state_name`: a gate's
    rejection, a person's), the named Failed state the flow ends in: its message the error's
    line, its data the error (calling the flow in-process raises it: the CLI's exit code)."""
    try:
        return fn(**kwargs)
    except MlopsError as exc:
        if exc.state_name is None:
            raise
        return named_failure(exc)


def named_failure(exc: MlopsError) -> State[Any]:
    """Failed, named as the error says, without a traceback in the logs (MLOPS_DEBUG=1 logs one)."""
    from prefect.logging import get_run_logger
    from prefect.states import Failed

    if debug_enabled():
        get_run_logger().error("%s", exc.state_name, exc_info=exc)
    return Failed(name=exc.state_name or "Failed", message=str(exc), data=exc)
