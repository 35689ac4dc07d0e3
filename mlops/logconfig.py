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
        if debug_enabled() or not record.exc_info:
            return super().format(record)
        quiet = copy.copy(record)
        quiet.exc_info = None
        quiet.exc_text = None
        quiet.stack_info = None
        return super().format(quiet)
