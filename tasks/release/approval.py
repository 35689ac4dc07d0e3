"""Approval for production: the policy (none, given up front by the CLI, or a person answering a
waiting run), who they are, and what they read before deciding (the form they answer is
tasks/release/approval_form.py).

A run waits by `pause_flow_run` when it runs in the CLI's own process, and by
`suspend_flow_run` when a worker runs it: then the job ends, no runner is held, and the answer
resumes the run in a new job, which replays this code up to the answered question. An answer
that is empty, invalid or not allowed is never a decision: the run asks again."""

from __future__ import annotations

from contextvars import ContextVar
from uuid import UUID

from tasks.adapters.audit_trail import AuditTrail, event
from tasks.adapters.gitlab import open_gitlab_quietly
from tasks.adapters.gitlab_identity import signed_approvals
from tasks.adapters.mlflow_registry import Registry
from tasks.contracts.release import Approval, Identity, SmokeReport
from tasks.core.audit_event import Action
from tasks.core.chain import Key
from tasks.core.config import ModelConfig
from tasks.core.errors import ApprovalError, ApprovalRejected, DeployError
from tasks.core.policy_config import (
    Governance,
    LoadedPolicy,
    deployment_refusal,
    governance,
)
from tasks.core.settings import Settings
from tasks.core.steps import step
from tasks.release.approval_form import ApprovalForm, form_for
from tasks.release.environment_approval import wait_for_gitlab
from tasks.release.guard import alias_as_recorded, approvals_short, sealed_facts
from tasks.release.policy import refusal
from tasks.release.waiting import AWAITING, waiting_run_id
from tasks.release.waiting import emit as _emit
from tasks.release.waiting import tag as _tag
from tasks.reports.approval import approval_markdown

# approval given up front by the CLI that runs the flow in its own process (`mlops run --as`);
# never a flow parameter, so no deployment run can carry one
UP_FRONT: ContextVar[Approval | None] = ContextVar("mlops_up_front_approval", default=None)


def approval_report(registry: Registry, cfg: ModelConfig, version: str, staging: SmokeReport,
                    loaded: LoadedPolicy, ui_url: str | None = None,
                    events: list[dict[str, str]] | None = None) -> str:
    """What an approver reads: the verdict first, then metrics vs the champion now (from the
    trail), data, links; and whether the compliance policy would let the version in now."""
    events = events or []
    rule = governance(loaded, cfg)
    ref = registry.require_version(cfg.name, version)
    facts, unusable = sealed_facts(cfg.name, version, ref.tags, events)
    ruled = unusable or deployment_refusal(loaded, "production", version, facts or {}, events)
    training = ref.tags.get("prefect_flow_run_id")
    return approval_markdown(
        model=cfg.name, version=version,
        champion=alias_as_recorded(registry, cfg.name, cfg.deploy.production.alias, events),
        tags=ref.tags, metrics=registry.run_metrics(ref.run_id) if ref.run_id else {},
        params=registry.run_params(ref.run_id) if ref.run_id else {},
        run_url=registry.run_url(ref.run_id) if ref.run_id else None, smoke=staging,
        approvers=rule.approvers, identity=rule.identity,
        training_run_url=f"{ui_url}/runs/flow-run/{training}" if ui_url and training else None,
        floor=cfg.gate.threshold, max_regression=cfg.gate.max_regression, policy_refusal=ruled)


def _ask(report: str, attempt: int, suspend: bool, timeout_s: int, identity: str = "gitlab",
         problem: str = "") -> ApprovalForm:
    """One question; a fresh key each attempt (a reused key would replay the old answer). The
    last answer's problem, if any, heads the question."""
    import pydantic
    from prefect.flow_runs import pause_flow_run, suspend_flow_run

    if problem:
        report = f"**Your last answer was not accepted: {problem}.**\n\n{report}"
    form = form_for(identity).with_initial_data(description=report)
    key = f"approval-{attempt}"
    try:
        if suspend:
            return suspend_flow_run(wait_for_input=form, timeout=timeout_s, key=key)
        return pause_flow_run(wait_for_input=form, timeout=timeout_s, poll_interval=2, key=key)
    except pydantic.ValidationError as exc:
        raise ApprovalError("; ".join(e["msg"].removeprefix("Value error, ")
                                      for e in exc.errors())) from None


def _identity(cfg: ModelConfig, rule: Governance, settings: Settings, answer: ApprovalForm,
              sha: str, run_id: str) -> Identity:
    """Who answered: the name typed (declared), or for identity gitlab the GitLab user who
    signed this answer on the version's commit with their own token."""
    if rule.identity == "declared":
        return Identity(username=answer.approver)
    if settings.gitlab is None or not sha:
        raise ApprovalError("identity gitlab needs GitLab settings where the run executes "
                            "(CI_SERVER_URL, CI_PROJECT_ID, MLOPS_GITLAB_TOKEN) and a commit")
    for signed in reversed(signed_approvals(settings.gitlab, sha, run_id)):
        if signed["decision"] == answer.decision and signed["username"] == answer.approver:
            return Identity(username=signed["username"], user_id=signed["user_id"],
                            verified=True, via="gitlab-token")
    raise ApprovalError(f"no {answer.decision} signed in GitLab by {answer.approver} for this "
                        f"run: answer with `mlops approve {cfg.name}` and MLOPS_APPROVER_TOKEN")


def _tell_parent(message: str) -> None:
    """The same line in the log of the run this one is a subflow of (the training run, which
    shows Running the whole time): a person looking there finds the run to answer."""
    import logging

    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    parent = flow_run.get_parent_flow_run_id()
    if not parent:
        return
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(parent))
    except Exception:  # a hint, never a reason to fail the deployment
        return
    logging.getLogger("prefect.flow_runs").info(message, extra={
        "flow_run_id": str(run.id), "flow_run_name": run.name, "flow_name": "training-pipeline",
        "task_run_id": None, "task_run_name": None})


def obtain_approval(registry: Registry, cfg: ModelConfig, version: str, staging: SmokeReport,
                    comment: str, wait: bool, settings: Settings, policy: LoadedPolicy,
                    key: Key) -> Approval | None:
    """Approval by policy (none), up front (the CLI's own process), or by a person answering
    this run; None when nobody can answer here (no server of the user's to wait on). The run's
    policy decides; the key signs the records."""
    from prefect.exceptions import FlowPauseTimeout
    from prefect.logging import get_run_logger
    from prefect.runtime import deployment

    spec = cfg.deploy.production
    loaded = policy
    rule = governance(loaded, cfg)
    if not rule.required:
        return Approval(approver=Identity(username="policy: approval none", via="policy"),
                        approved=True, comment=comment)
    if UP_FRONT.get() is not None:
        return UP_FRONT.get()
    if not wait:
        return None
    if rule.identity == "gitlab-environment":
        from tasks.adapters.gitlab_deployments import GitLabDeploymentApprovals

        trail = AuditTrail(registry, cfg.name, open_gitlab_quietly(settings.gitlab),
                           settings=settings, key=key)
        return wait_for_gitlab(trail, event, rule, cfg, version, GitLabDeploymentApprovals(
            settings.gitlab) if settings.gitlab else None)
    log, run_id = get_run_logger(), waiting_run_id()
    trail = AuditTrail(registry, cfg.name, open_gitlab_quietly(settings.gitlab),
                       settings=settings, key=key)
    tags = registry.require_version(cfg.name, version).tags
    requested = _request(trail, cfg, version, run_id)
    attempt, problem = 0, ""
    while True:
        attempt += 1
        events = trail.events()  # judged against production now, at every question
        facts, _ = sealed_facts(cfg.name, version, tags, events)
        report = approval_report(registry, cfg, version, staging, loaded,
                                 settings.prefect_ui_url, events)
        _tag(add=[AWAITING, f"model:{cfg.name}", f"version:{version}"])
        if requested:  # said once per request, not on every replay after a resume
            _announce(cfg.name, version, run_id, first=attempt == 1)
        try:
            answer = _ask(report, attempt, suspend=deployment.get_id() is not None,
                          timeout_s=int(spec.approval_timeout_h * 3600), identity=rule.identity,
                          problem=problem)
            who = _identity(cfg, rule, settings, answer, tags.get("git_commit", ""), run_id)
        except ApprovalError as exc:
            log.warning("answer not accepted, asking again: %s", exc)
            problem = str(exc)
            continue
        except FlowPauseTimeout:  # in the CLI's process; a suspended run is failed by the server
            _tag(remove=[AWAITING])
            trail.write(event(Action.APPROVAL_TIMEOUT, "production", None, version, "nobody",
                              reason=f"no answer within {spec.approval_timeout_h:g} h",
                              flow_run_id=run_id))
            raise DeployError(f"{cfg.name} v{version} not promoted: no approval within "
                              f"{spec.approval_timeout_h:g} h") from None
        reason = refusal(rule, who, facts or {}) if answer.decision == "approve" else \
            refusal(rule, who, None)
        if reason:
            trail.write(event(Action.APPROVAL_REFUSED, "production", None, version, who.username,
                              answer.comment, run_id, reason, identity=who.label()))
            log.warning("%s; asking again", reason)
            problem = reason
            continue
        _emit("mlops.approval.answered", cfg.name, version,
              {"decision": answer.decision, "approver": who.label(), "comment": answer.comment})
        approval = Approval(approver=who, approved=answer.decision == "approve",
                            comment=answer.comment or comment)
        if not approval.approved:
            _tag(remove=[AWAITING])
            trail.write(event(Action.APPROVAL_REJECTED, "production", None, version, who.username,
                              answer.comment, run_id, identity=who.label(),
                              actor_id=str(who.user_id or "")))
            raise ApprovalRejected(f"{cfg.name} v{version} rejected by {who.label()}: "
                              f"{answer.comment}")
        short = approvals_short(rule, events, version, who)
        if short and rule.min_approvals > 1:
            trail.write(event(Action.APPROVAL_GIVEN, "production", None, version, who.username,
                              answer.comment, run_id, identity=who.label(),
                              actor_id=str(who.user_id or "")))
            log.info("%s approved; %s", who.label(), short.replace(", each approves in the "
                                                                  "deploy run", ""))
            continue
        _tag(remove=[AWAITING])
        return approval


def _announce(model: str, version: str, run_id: str | None, first: bool) -> None:
    """Where to answer: in the run's log, and on the first question in its parent's too."""
    from prefect.logging import get_run_logger
    from prefect.runtime import flow_run

    get_run_logger().info("waiting for approval of %s v%s: %s — or `mlops approve %s`", model,
                          version, flow_run.ui_url or run_id, model)
    if first:
        _tell_parent(f"{model} v{version} waits for approval in run "
                     f"{flow_run.name}: {flow_run.ui_url or run_id} — or `mlops approve "
                     f"{model}`")


def _request(trail: AuditTrail, cfg: ModelConfig, version: str, run_id: str) -> bool:
    """Record and announce the request once per run (a resumed run replays this code)."""
    if any(r.get("action") == Action.APPROVAL_REQUESTED and r.get("flow_run_id") == run_id
           for r in trail.events()):
        return False
    trail.write(event(Action.APPROVAL_REQUESTED, "production", None, version, "pipeline",
                      flow_run_id=run_id))
    from prefect.runtime import flow_run

    _emit("mlops.approval.requested", cfg.name, version, {"url": flow_run.ui_url or ""})
    return True


EXPIRED = "paused and never resumed"


@step("record-expired-approval")
def record_expired(registry: Registry, flow_run_id: str, settings: Settings, key: Key) -> str:
    """A suspended deploy run whose approval time ran out is failed by the Prefect server, with no
    process left to say so: this writes its `approval-timeout` record (once) and clears its tag."""
    from prefect import get_client

    from tasks.core.config import load_config

    run_id = flow_run_id.removeprefix("prefect.flow-run.")
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
        message = (run.state.message or "") if run.state else ""
        if AWAITING not in run.tags or EXPIRED not in message:
            return f"flow run {run_id} did not expire waiting for approval: nothing to record"
        client.update_flow_run(run.id, tags=[t for t in run.tags if t != AWAITING])
    cfg = load_config(str(run.parameters["model"]), settings.config_dir)
    version = str(run.parameters["version"])
    trail = AuditTrail(registry, cfg.name, open_gitlab_quietly(settings.gitlab),
                       settings=settings, key=key)
    if any(r.get("action") == Action.APPROVAL_TIMEOUT and r.get("flow_run_id") == str(run.id)
           for r in trail.events()):
        return f"{cfg.name} v{version}: timeout already recorded"
    trail.write(event(Action.APPROVAL_TIMEOUT, "production", None, version, "nobody",
                      flow_run_id=str(run.id),
                      reason=f"no answer within {cfg.deploy.production.approval_timeout_h:g} h"))
    return f"{cfg.name} v{version}: approval timed out; recorded"
