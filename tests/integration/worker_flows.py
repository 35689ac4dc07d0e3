"""A flow small enough to run many times through the gitlab-ci worker's tests."""

from __future__ import annotations

import time

from prefect import flow


@flow(name="worker-probe")
def probe(seconds: float = 0.0) -> str:
    """Sleep, then return; the job that ran it is the point of the test."""
    time.sleep(seconds)
    return "done"
