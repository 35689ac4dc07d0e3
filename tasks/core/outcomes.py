"""Our own errors are outcomes with one-line messages (a gate's rejection, a person's, a refused
promotion): in a run's logs they read as that line, never as a traceback or as the repr of a
state with its data (`GateRejected(message=…, result=GateDecision(…))`). MLOPS_DEBUG=1 keeps
everything. On every handler of mlops/logging.yml (the CLI and the local stack's workers) and
installed by the pull step for any other worker's flow runs, before the redaction filter."""

from __future__ import annotations

import logging
import re

from tasks.core.errors import MlopsError
from tasks.core.settings import debug_enabled

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
