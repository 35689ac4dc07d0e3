"""Flow run names that say what a run does: `score-fraud-2026-12-06`, `train-fraud-2026-12-06`
(the run's `day` or `as_of` when given, else today in UTC)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import PurePosixPath
from typing import Any


def describe(verb: str, parameters: Mapping[str, Any], today: date | None = None) -> str:
    """`<verb>-<what>-<day>`: what is the model, or the notebook's stem."""
    what = parameters.get("model") or PurePosixPath(str(parameters.get("notebook") or "")).stem
    day = parameters.get("day") or parameters.get("as_of") or today or datetime.now(UTC).date()
    parts = [verb, str(what) if what else "", str(day)[:10]]
    return "-".join(p for p in parts if p)


def run_name(verb: str) -> Callable[[], str]:
    """A `flow_run_name` callable: Prefect calls it inside the run, parameters known."""

    def name() -> str:
        from prefect.context import FlowRunContext

        context = FlowRunContext.get()
        return describe(verb, (context.parameters or {}) if context else {})

    name.__name__ = f"{verb}_run_name"
    return name
