"""Console logging for the CLI: Prefect's progress on stdout, failures without tracebacks."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

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
