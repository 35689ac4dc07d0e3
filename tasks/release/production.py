"""Production changes, one per model at a time: promotion and rollback. Under the model's lock:
the person's right to decide, a passed staging of this very version (promotion) or a former
champion (rollback), no freeze window; then an intent record, the alias move, the post-deploy
checks, and a completion record (or an automatic rollback). Whoever finds an intent without its
completion (a crash, an outage) finishes it first, and says so."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

from tasks.adapters.gitlab import open_gitlab_quietly
from tasks.adapters.mlflow_registry import Registry
from tasks.contracts.release import Approval, Identity
from tasks.core.config import FreezeWindow, ModelConfig, ProductionSpec
from tasks.core.errors import ApprovalError, DeployError, PolicyRefused
from tasks.core.policy_config import deployment_refusal, load_policy
from tasks.core.settings import Settings
from tasks.core.steps import step
from tasks.release.audit import (
    AuditTrail,
    event,
    former_champions,
    now_utc,
    previous_champion,
    staged_digest,
    unfinished,
)
from tasks.release.policy import refusal
from tasks.release.serving import check_predictions

log = logging.getLogger("mlops.release")
Checks = Callable[[Registry, ModelConfig, str], None]


def active_freeze(spec: ProductionSpec, today: date) -> FreezeWindow | None:
    return next((w for w in spec.freeze if w.covers(today)), None)


def freeze_reason(window: FreezeWindow) -> str:
    return (f"freeze window {window.start}..{window.end}"
            + (f" ({window.reason})" if window.reason else ""))


def post_deploy_checks(registry: Registry, cfg: ModelConfig, version: str) -> None:
    """The alias resolves to the version, its files are intact, and it predicts."""
    alias = cfg.deploy.production.alias
    resolved = registry.alias_version(cfg.name, alias)
    if resolved != version:
        raise DeployError(f"{cfg.name}@{alias} resolves to v{resolved}, expected v{version}")
    with tempfile.TemporaryDirectory(prefix="mlops-check-") as tmp:
        local = registry.download_version(cfg.name, version, Path(tmp), require_manifest=True)
        model = registry.load_pyfunc(local.path)
        problems = check_predictions(model.predict(local.example), len(local.example),
                                     local.spec)
        if problems:
            raise DeployError(f"{cfg.name} v{version} post-deploy check: {problems[0]}")


def open_trail(registry: Registry, cfg: ModelConfig) -> AuditTrail:
    return AuditTrail(registry, cfg.name, open_gitlab_quietly(),
                      Settings.from_env().resolve_audit_key())


def move_checked(registry: Registry, cfg: ModelConfig, trail: AuditTrail, kind: str,
                 current: str | None, target: str | None, who: Identity, comment: str,
                 flow_run_id: str | None, checks: Checks | None) -> None:
    """intent → alias → checks → completion; a failed check moves the alias back. The caller
    holds the lock."""
    alias, done = cfg.deploy.production.alias, {"promotion": "promoted",
                                                 "rollback": "rolled-back"}[kind]
    trail.write(event(f"{kind}-intent", "production", current, target, who.username, comment,
                      flow_run_id, alias=alias, identity=who.label(),
                      actor_id=str(who.user_id or "")))
    registry.move_alias(cfg.name, alias, target)
    try:
        if target is not None:
            (checks or post_deploy_checks)(registry, cfg, target)
    except Exception as exc:
        registry.move_alias(cfg.name, alias, current)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        trail.write(event("rolled-back", "production", target, current, "automatic",
                          "post-deploy check failed", flow_run_id, reason, alias=alias))
        back = f"v{current}" if current else "no champion"
        raise DeployError(f"{cfg.name} v{target} failed its post-deploy checks ({reason}); "
                          f"rolled back to {back}") from None
    trail.write(event(done, "production", current, target, who.username, comment, flow_run_id,
                      alias=alias, identity=who.label(), actor_id=str(who.user_id or "")))


def finish_interrupted(registry: Registry, cfg: ModelConfig, trail: AuditTrail,
                       checks: Checks | None = None) -> str | None:
    """Complete (checks passed) or revert the newest intent nobody finished; what was done."""
    intent = unfinished(trail.events())
    if intent is None:
        return None
    alias = cfg.deploy.production.alias
    target, before = intent.get("to_version") or None, intent.get("from_version") or None
    live = registry.alias_version(cfg.name, alias)
    kind = intent["action"].removesuffix("-intent")
    done = {"promotion": "promoted", "rollback": "rolled-back"}[kind]
    note = f"{kind} of v{target} interrupted (record {intent['seq']})"
    if live != target:
        trail.write(event("promotion-abandoned", "production", before, target, "automatic",
                          reason=f"{note}: the alias never moved", alias=alias))
        return f"{note}: the alias had not moved; abandoned"
    try:
        if target is not None:
            (checks or post_deploy_checks)(registry, cfg, target)
    except Exception as exc:
        registry.move_alias(cfg.name, alias, before)
        trail.write(event("rolled-back", "production", target, before, "automatic",
                          "interrupted, then failed its post-deploy checks",
                          reason=str(exc).splitlines()[0][:300], alias=alias))
        return f"{note}: its checks failed now, so @{alias} went back to v{before or '-'}"
    trail.write(event(done, "production", before, target, intent.get("actor", ""),
                      intent.get("comment", ""), intent.get("flow_run_id", ""),
                      reason=f"{note}: completed after its post-deploy checks passed",
                      alias=alias, identity=intent.get("identity", "")))
    return f"{note}: checks passed now; completed"


def promote(registry: Registry, cfg: ModelConfig, version: str, approver: Identity,
            comment: str = "", flow_run_id: str | None = None, today: date | None = None,
            checks: Checks | None = None) -> str | None:
    """Move the champion alias to `version` if policy allows; returns the previous champion."""
    spec = cfg.deploy.production
    ref = registry.require_version(cfg.name, version)
    policy = load_policy(Settings.from_env().policy_path)
    trail = open_trail(registry, cfg)
    with trail.locked():
        recovered = finish_interrupted(registry, cfg, trail, checks)
        if recovered:
            log.warning("%s", recovered)
        previous = registry.alias_version(cfg.name, spec.alias)
        digest = registry.require_manifest(cfg.name, version)  # no manifest, no promotion
        reason = (refusal(cfg, approver, ref.tags) if spec.approval != "none" else None) \
            or _not_staged(trail, version, digest)
        window = active_freeze(spec, today or now_utc().date())
        if reason is None and window is not None:
            reason = freeze_reason(window)
        ruled = None if reason else deployment_refusal(policy, "production", version, ref.tags,
                                                       trail.events())
        reason = reason or ruled
        if reason:
            trail.write(event("promotion-refused", "production", previous, version,
                              approver.username, comment, flow_run_id, reason,
                              identity=approver.label()))
            error = DeployError if window is not None and reason.startswith("freeze") \
                else PolicyRefused if ruled else ApprovalError
            raise error(f"promotion of {cfg.name} v{version} refused: {reason}")
        move_checked(registry, cfg, trail, "promotion", previous, version, approver, comment,
                     flow_run_id, checks)
    return previous


def _not_staged(trail: AuditTrail, version: str, digest: str) -> str | None:
    staged = staged_digest(trail.events(), version)
    if staged is None:
        return f"v{version} has not passed staging (run the deploy flow first)"
    if staged and digest and staged != digest:
        return f"v{version}'s files changed since it was staged (digest {digest[:12]}…)"
    return None


def rollback(registry: Registry, cfg: ModelConfig, actor: Identity, to_version: str | None = None,
             comment: str = "", today: date | None = None, checks: Checks | None = None
             ) -> tuple[str, str | None]:
    """Point the champion back to `to_version`, or to what it was before the current one's
    promotion; when the current champion was the first, the alias is removed."""
    alias = cfg.deploy.production.alias
    trail = open_trail(registry, cfg)
    with trail.locked():
        recovered = finish_interrupted(registry, cfg, trail, checks)
        if recovered:
            log.warning("%s", recovered)
        current = registry.alias_version(cfg.name, alias)
        if current is None:
            raise DeployError(f"{cfg.name} has no {alias} to roll back")
        events = trail.events()
        if to_version:
            registry.require_version(cfg.name, to_version)
            target: str | None = to_version
            reason = None if to_version in former_champions(events, alias) else (
                f"v{to_version} was never {alias}: rollback only returns to a version production "
                "ran before (promote it instead)")
        else:
            found, target = previous_champion(events, current, alias)
            reason = None if found else (f"no promotion of {cfg.name} v{current} is recorded; "
                                         "name a former champion with --version")
        who = refusal(cfg, actor, {}) if cfg.deploy.production.approval != "none" else None
        window = active_freeze(cfg.deploy.production, today or now_utc().date())
        reason = reason or who or (freeze_reason(window) if window else None)
        if reason:
            trail.write(event("rollback-refused", "production", current, target,
                              actor.username, comment, reason=reason, identity=actor.label()))
            error = ApprovalError if who and reason == who else DeployError
            raise error(f"rollback of {cfg.name} refused: {reason}")
        move_checked(registry, cfg, trail, "rollback", current, target, actor,
                     comment or "manual rollback", None, checks)
    return current, target


@step("promote-production")
def production(registry: Registry, cfg: ModelConfig, version: str, approval: Approval) -> str:
    from prefect.runtime import flow_run

    previous = promote(registry, cfg, version, approval.approver, approval.comment,
                       flow_run.get_id())
    return previous or ""
