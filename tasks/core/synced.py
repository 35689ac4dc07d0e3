"""Prefect's context-dispatching calls (`Block.load`, `create_progress_artifact`, ...) are typed
as "the value, or a coroutine of it", whichever context they are called from; the pipeline calls
them from synchronous code, where they return the value. `synced` says so to the type checker,
and fails with one line instead of handing a coroutine on where one slipped through."""

from __future__ import annotations

import inspect
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")


def synced(value: _T | Coroutine[Any, Any, _T]) -> _T:
    """The value of a dispatching Prefect call made from synchronous code."""
    if inspect.iscoroutine(value):
        value.close()  # never awaited: no "coroutine was never awaited" warning later
        raise TypeError("a Prefect call made from async code returned a coroutine: "
                        "await its async variant there")
    return value  # type: ignore[return-value]  # a coroutine was ruled out just above
