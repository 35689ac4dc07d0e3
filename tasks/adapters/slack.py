"""The only code that talks to Slack: a Prefect Slack webhook block, named by MLOPS_SLACK_BLOCK."""

from __future__ import annotations

import logging
from typing import Any

from tasks.core.redact import redact
from tasks.core.settings import process_settings

log = logging.getLogger("mlops.slack")


def notify(subject: str, body: str, name: str | None) -> bool:
    """Post to the Slack webhook block named (the settings' slack_block; none: Slack is not
    configured), secrets redacted; never fails the caller (a broken notifier must not turn a
    good run into a failed one). Returns whether a message went out."""
    if not name:
        return False
    try:
        from prefect.blocks.notifications import SlackWebhook

        # `_sync=True`: Prefect's async_dispatch runs both calls synchronously (load's signature
        # does not show the keyword)
        load: Any = SlackWebhook.load
        load(name, _sync=True).notify(body=redact(body), subject=redact(subject), _sync=True)
    except Exception as exc:  # the block's URL is a secret: report the kind of failure only
        log.warning("Slack notification through block %r failed: %s", name, type(exc).__name__)
        return False
    return True


def notify_flow_failure(flow, flow_run, state) -> None:
    """Flow hook (on_failure, on_crashed): say which run of which flow failed, and why. Prefect
    calls it with its own arguments: the Slack block is the one the flow's own settings name
    (read where the flow started)."""
    reason = (state.message or state.name or "failed").splitlines()[0][:300]
    params = flow_run.parameters or {}
    notify(f"{flow.name} failed: {params.get('model', '?')}",
           f"Flow run {flow_run.name} ({flow_run.id}) ended {state.name}: {reason}",
           process_settings().slack_block)
