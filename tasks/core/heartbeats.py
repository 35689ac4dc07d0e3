"""Heartbeats of the flow runs the CLI runs in its own process (`mlops train`, `run`, `score`,
`monitor`), at the interval every job beats at (deployments/pools.yaml `limits:`).

Prefect's own heartbeats do not fit these runs:
- Its default interval, 180 s, is longer than the silence after which the zombie-run
  automation marks a run Crashed (120 s): a CLI run longer than two minutes showed Crashed in
  the UI while it was still training.
- Its heartbeat thread sleeps in whole seconds and is joined when the flow ends, so a run
  ended on the next whole second after it started: 0.5 s a run on average.

So the CLI turns Prefect's heartbeats off for its runs (`cli_heartbeats`), and the flow body
beats here, while it runs, from its first line to its last. Jobs on workers keep Prefect's
(the pools' PREFECT_FLOWS_HEARTBEAT_FREQUENCY), and this module does nothing there."""

from __future__ import annotations

import contextvars
import functools
import inspect
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
EVERY_S: contextvars.ContextVar[float | None] = contextvars.ContextVar("mlops_heartbeat_s",
                                                                       default=None)
P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def cli_heartbeats(every_s: float) -> Iterator[None]:
    """Flow runs called in this block beat every every_s seconds from their body (`beating`)
    instead of from Prefect's thread."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    token = EVERY_S.set(every_s)
    try:
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield
    finally:
        EVERY_S.reset(token)


def beating(fn: Callable[P, R]) -> Callable[P, R]:
    """A flow's body that sends the run's heartbeats while it runs, when the CLI runs it
    (`cli_heartbeats`); put it under `@flow`."""

    @functools.wraps(fn)
    def body(*args: P.args, **kwargs: P.kwargs) -> R:
        every_s = EVERY_S.get()
        if every_s is None:
            return fn(*args, **kwargs)
        with _heartbeats(every_s):
            return fn(*args, **kwargs)

    # the signature with the types themselves, not their names: Prefect validates a run's
    # parameters against it in this module's namespace, where the flow module's names are unknown
    body.__signature__ = inspect.signature(fn, eval_str=True)  # type: ignore[attr-defined]
    return body


@contextmanager
def _heartbeats(every_s: float) -> Iterator[None]:
    """The current flow run's heartbeat now and every every_s seconds, stopped at once on exit
    (the event Prefect's engine sends: same resource and related resources)."""
    from prefect.context import FlowRunContext
    from prefect.events import emit_event

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        yield
        return
    resource, related = _heartbeat_resources(context)
    with every(every_s, lambda: emit_event(event=HEARTBEAT_EVENT, resource=resource,
                                           related=related), "flow-run-heartbeat"):
        yield


@contextmanager
def every(every_s: float, send: Callable[[], object], name: str) -> Iterator[None]:
    """send() now and every every_s seconds in a thread called name while the block runs;
    stopped at once when it ends. The thread sees the caller's context (Prefect's settings: the
    API URL), as Prefect's own heartbeat thread does."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            send()
            if stop.wait(every_s):
                return

    thread = threading.Thread(target=contextvars.copy_context().run, args=(beat,), name=name,
                              daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _heartbeat_resources(context: Any) -> tuple[dict[str, str], list[dict[str, str]]]:
    import prefect

    run = context.flow_run
    resource = {"prefect.resource.id": f"prefect.flow-run.{run.id}",
                "prefect.resource.name": run.name or "", "prefect.version": prefect.__version__}
    related = [{"prefect.resource.id": f"prefect.flow.{run.flow_id}",
                "prefect.resource.role": "flow", "prefect.resource.name": context.flow.name}]
    if run.deployment_id:
        related.append({"prefect.resource.id": f"prefect.deployment.{run.deployment_id}",
                        "prefect.resource.role": "deployment"})
    related += [{"prefect.resource.id": f"prefect.tag.{tag}", "prefect.resource.role": "tag"}
                for tag in sorted(run.tags or [])]
    return resource, related
