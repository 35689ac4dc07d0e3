"""Approvals that nobody answered in time: the audit record the suspended run could not write."""

from __future__ import annotations

from prefect import flow

from tasks.adapters.registries import connect
from tasks.core.runnames import run_name
from tasks.core.runtime import Runtime
from tasks.core.settings import Settings
from tasks.release.approval import record_expired


@flow(name="approval-expiry", flow_run_name=run_name("approval-expiry"), log_prints=True)
def approval_expiry(flow_run_id: str) -> str:
    """Record the timeout of a deploy run that waited for approval until Prefect failed it.

    Args:
        flow_run_id: The failed deploy flow run (its id, or the event's resource id
            `prefect.flow-run.<id>`); started by the trigger in prefect.yaml.
    """
    runtime = Runtime(Settings.from_env())
    outcome = record_expired(registry=connect(runtime.settings), flow_run_id=flow_run_id,
                             settings=runtime.settings, key=runtime.audit_key)
    print(outcome)
    return outcome
