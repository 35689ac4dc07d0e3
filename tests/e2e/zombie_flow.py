"""A flow that records its process id and then works for longer than any test waits: the
zombie-run tests kill it mid-run. Its first `busy_runs` runs sleep, later ones (a re-run) end at
once; its first `killed_runs` runs SIGKILL themselves (a crash the live worker reports)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run


@flow(name="zombie-probe")
def zombie_probe(pid_file: str, seconds: int = 600, busy_runs: int = 99,
                 killed_runs: int = 0) -> None:
    run = flow_run.run_count
    Path(pid_file).write_text(str(os.getpid()))
    if run <= killed_runs:
        os.kill(os.getpid(), signal.SIGKILL)
    if run <= busy_runs:
        time.sleep(seconds)
