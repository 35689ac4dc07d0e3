"""Console logging for the CLI: Prefect's progress on stdout, failures without tracebacks."""

from __future__ import annotations

import copy
import logging
import sys
from pathlib import Path
from typing import Any

from prefect.logging.formatters import PrefectFormatter

from tasks.core.settings import debug_enabled

LOGGING_YML = Path(__file__).with_name("logging.yml")


class OneLineFormatter(PrefectFormatter):
    """Drops tracebacks (the CLI prints the error once); MLOPS_DEBUG=1 keeps them."""

    def format(self, record: logging.LogRecord) -> str:
        # the redaction filter has turned exc_info into (redacted) exc_text by now
        if debug_enabled() or not (record.exc_info or record.exc_text):
            return super().format(record)
        quiet = copy.copy(record)
        quiet.exc_info = None
        quiet.exc_text = None
        quiet.stack_info = None
        return super().format(quiet)


class ConsoleHandler(logging.StreamHandler):
    """A StreamHandler writing to whatever `sys.<name>` is when a record comes, not what it was
    when logging was configured: Prefect configures logging once per process, and a stream
    swapped in by the caller at that moment (a test's CliRunner) is closed later."""

    def __init__(self, to: str = "stdout"):
        self._to = to
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return getattr(sys, self._to)

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler sets it; the property decides
        pass
