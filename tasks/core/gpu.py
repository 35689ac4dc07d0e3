"""The global concurrency limit `gpu`: a GPU training holds one slot while it trains, so no more
GPU trainings run at once than there are GPU runners (deployments/pools.yaml). CPU training never
touches it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any

from tasks.core.errors import ConfigError

GPU_LIMIT = "gpu"


def in_deployment_run() -> bool:
    """A run a worker started from a deployment: its server had `mlops pools apply`, so the limit
    must exist. A flow called in-process (a test, `mlops train` on a temporary server) need not."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return bool(ctx and ctx.flow_run and ctx.flow_run.deployment_id)


@contextmanager
def gpu_slot(device: str, strict: bool | None = None,
             acquire: Callable[..., AbstractContextManager[Any]] | None = None) -> Iterator[None]:
    """Hold one `gpu` slot while the body runs on `device` == "cuda" (waiting for a free one);
    nothing at all for CPU. strict (default: in a deployment run) makes a missing limit an
    error instead of Prefect's warning. The slot is a lease: a killed process frees it when the
    lease runs out."""
    if device != "cuda":
        yield
        return
    from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError
    from prefect.concurrency.sync import concurrency

    strict = in_deployment_run() if strict is None else strict
    with ExitStack() as stack:
        try:
            stack.enter_context((acquire or concurrency)(
                GPU_LIMIT, occupy=1, strict=strict, raise_on_lease_renewal_failure=False))
        except ConcurrencySlotAcquisitionError as exc:
            raise ConfigError(f"no global concurrency limit {GPU_LIMIT!r} on this Prefect server "
                              f"(run `mlops pools apply`): {str(exc).splitlines()[0]}") from None
        yield
