"""A flow that records its process id and then works for longer than any test waits: the
zombie-run test kills it mid-run."""

from __future__ import annotations

import os
import time
from pathlib import Path

from prefect import flow


@flow(name="zombie-probe")
def zombie_probe(pid_file: str, seconds: int = 600) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)
