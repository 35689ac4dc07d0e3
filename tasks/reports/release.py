"""What a finished deploy run says: what moved, from which version to which, who decided."""

from __future__ import annotations

from tasks.contracts.release import DeployResult
from tasks.core.steps import artifact_key, step


def deploy_markdown(result: DeployResult, approver: str = "", comment: str = "") -> str:
    lines = [f"# {result.model} v{result.version}: {result.production}", "",
             f"- {result.message}", f"- staging: {result.staging}",
             f"- champion now: {'v' + result.champion if result.champion else 'none'}"]
    if approver:
        lines.append(f"- decided by: {approver}" + (f", “{comment}”" if comment else ""))
    return "\n".join(lines) + "\n"


@step("publish-deploy-summary")
def publish_deploy_summary(result: DeployResult) -> DeployResult:
    """One summary line in the run's log and a markdown artifact on the run; the result."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.logging import get_run_logger

    get_run_logger().info("%s", result.message)
    approval = result.approval
    create_markdown_artifact(deploy_markdown(result, approval.approver.label() if approval else "",
                                             approval.comment if approval else ""),
                             key=artifact_key("deploy", result.model),
                             description=f"{result.model} v{result.version}: {result.production}")
    return result
