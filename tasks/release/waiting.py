"""How a deploy run that waits for approval shows itself: a tag on the run (the UI's lists and
`mlops approve` find it by it) and Prefect events (automations can notify on them)."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from tasks.core.errors import DeployError

AWAITING = "awaiting-approval"


def waiting_run_id() -> str:
    """The id of the flow run that waits (asking for approval happens only inside one)."""
    from prefect.runtime import flow_run

    found = flow_run.get_id()
    if found is None:
        raise DeployError("waiting for approval needs a Prefect flow run")
    return found


def tag(add: Sequence[str] = (), remove: Sequence[str] = ()) -> None:
    """Add or remove tags of the current flow run (the run shows them in the UI's lists)."""
    from prefect import get_client
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    if run_id is None:  # not in a flow run: nothing to tag
        return
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
        tags = [t for t in run.tags if t not in remove]
        client.update_flow_run(run.id, tags=tags + [t for t in add if t not in tags])


def emit(name: str, model: str, version: str, payload: dict) -> None:
    from prefect.events import emit_event

    emit_event(name, resource={"prefect.resource.id": f"mlops.model.{model}",
                               "prefect.resource.name": f"{model} v{version}"},
               payload={"model": model, "version": version, **payload})
