"""`mlops approve`: answer a flow run paused for production approval through Prefect's API."""

from __future__ import annotations

from uuid import UUID

from tasks.core.config import load_config
from tasks.core.errors import ApprovalError, ConfigError, DeployError
from tasks.core.settings import Settings
from tasks.release.approval import check_approver


def answer_paused_run(flow_run_id: str, approver: str, approve: bool, comment: str,
                      settings: Settings) -> str:
    """Check the approver against the model's config, then resume the run with the answer.

    An unlisted approver is refused here, and the run stays paused for someone who may answer.
    """
    if not settings.prefect_api_url:
        raise ConfigError("mlops approve needs PREFECT_API_URL: the Prefect server that runs "
                          "the paused flow")
    try:
        run_id = UUID(flow_run_id)
    except ValueError:
        raise ApprovalError(f"{flow_run_id!r} is not a flow run id") from None

    from prefect import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(run_id)
        except ObjectNotFound:
            raise ApprovalError(f"no flow run {flow_run_id} on this Prefect server") from None
        if run.state is None or run.state.type != StateType.PAUSED:
            state = run.state.name if run.state else "unknown"
            raise ApprovalError(f"flow run {flow_run_id} is not waiting for approval "
                                f"(state {state})")
        model, version = run.parameters.get("model"), run.parameters.get("version")
        if not model:
            raise ApprovalError(f"flow run {flow_run_id} is not a deploy run")
        cfg = load_config(str(model), settings.config_dir)
        check_approver(cfg, approver)
        result = client.resume_flow_run(
            run_id, run_input={"approver": approver, "approve": approve, "comment": comment})
    if result.status.value != "ACCEPT":
        reason = getattr(result.details, "reason", "") or result.status.value
        raise DeployError(f"Prefect did not resume flow run {flow_run_id}: {reason}")
    verb = "approved" if approve else "rejected"
    return f"{verb} {cfg.name} v{version} (flow run {flow_run_id}) as {approver}"
