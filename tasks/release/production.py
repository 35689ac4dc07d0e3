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

from tasks.adapters.audit_store import alias_from, former_champions
from tasks.adapters.audit_trail import (
    AuditTrail,
    event,
    now_utc,
    previous_champion,
    staged_digest,
    unfinished,
)
from tasks.adapters.gitlab import open_gitlab_quietly
from tasks.adapters.mlflow_registry import Registry
from tasks.contracts.release import Approval, Identity
from tasks.core.audit_event import DONE, INTENT, Action
from tasks.core.chain import Key
from tasks.core.config import FreezeWindow, ModelConfig, ProductionSpec
from tasks.core.errors import ApprovalError, DeployError, PolicyRefused, RegistryError
from tasks.core.policy_config import (
    Governance,
    LoadedPolicy,
    Signed,
    deployment_refusal,
    governance,
)
from tasks.core.settings import Settings
from tasks.core.steps import step
from tasks.release.guard import (
    alias_as_recorded,
    approvals_short,
    not_a_promotion,
    require_production_change,
    sealed_facts,
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


def open_trail(registry: Registry, cfg: ModelConfig, settings: Settings, key: Key
               ) -> AuditTrail:
    """The model's trail, signed with the key, mirrored to the settings' GitLab."""
    return AuditTrail(registry, cfg.name, open_gitlab_quietly(settings.gitlab),
                      settings=settings, key=key)


def _ruled(cfg: ModelConfig, settings: Settings, policy: LoadedPolicy, key: Key) -> Governance:
    """The rule this model's production change is judged by (the caller's policy, tightened by
    the model's config); and no change at all without the key or, in CI, off a protected ref."""
    rule = governance(policy, cfg)
    require_production_change(rule, key, settings.ci)
    return rule


def intact_events(trail: AuditTrail) -> list[dict[str, str]]:
    """The trail's records, when it is whole: a deleted or broken trail decides nothing."""
    broken = trail.problems()
    if broken:
        raise RegistryError(f"the audit trail of {trail.model} is not intact ({broken[0]}): "
                            f"nothing was changed; see `mlops audit verify {trail.model}`")
    return trail.events()


# one transition, whole (over the argument budget: test_structure.py)
def move_checked(registry: Registry, cfg: ModelConfig, trail: AuditTrail, kind: str,  # noqa: PLR0913
                 current: str | None, target: str | None, who: Identity, comment: str,
                 flow_run_id: str | None, checks: Checks | None, rule: Governance | None = None
                 ) -> None:
    """intent → alias → checks → completion; a failed check moves the alias back. The caller
    holds the lock. The intent names the policy and model config it was judged by (hashes)."""
    alias, done = cfg.deploy.production.alias, DONE[kind]
    judged = {"policy_sha256": rule.policy_sha256, "config_sha256": rule.config_sha256} \
        if rule is not None else {}
    trail.write(event(INTENT[kind], "production", current, target, who.username, comment,
                      flow_run_id, alias=alias, identity=who.label(),
                      actor_id=str(who.user_id or ""), **judged))
    registry.move_alias(cfg.name, alias, target)
    try:
        if target is not None:
            (checks or post_deploy_checks)(registry, cfg, target)
    except Exception as exc:
        registry.move_alias(cfg.name, alias, current)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        trail.write(event(Action.ROLLED_BACK, "production", target, current, "automatic",
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
    kind = next(k for k, action in INTENT.items() if action == intent["action"])
    done = DONE[kind]
    note = f"{kind} of v{target} interrupted (record {intent['seq']})"
    if live != target:
        trail.write(event(Action.PROMOTION_ABANDONED, "production", before, target, "automatic",
                          reason=f"{note}: the alias never moved", alias=alias))
        return f"{note}: the alias had not moved; abandoned"
    try:
        if target is not None:
            (checks or post_deploy_checks)(registry, cfg, target)
    except Exception as exc:
        registry.move_alias(cfg.name, alias, before)
        trail.write(event(Action.ROLLED_BACK, "production", target, before, "automatic",
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
            checks: Checks | None = None, *, signed: Signed) -> str | None:
    """Move the champion alias to `version` if the policy allows; returns the previous champion
    (from the trail). Everything judged here comes from signed records: the champion, the
    version's sealed facts, its staging, the approvals already given."""
    settings, policy, key = signed.settings, signed.policy, signed.key
    spec = cfg.deploy.production
    rule = _ruled(cfg, settings, policy, key)
    ref = registry.require_version(cfg.name, version)
    trail = open_trail(registry, cfg, settings, key)
    with trail.locked():
        recovered = finish_interrupted(registry, cfg, trail, checks)
        if recovered:
            log.warning("%s", recovered)
        events = intact_events(trail)
        previous = alias_as_recorded(registry, cfg.name, spec.alias, events)
        digest = registry.require_manifest(cfg.name, version)  # no manifest, no promotion
        facts, unusable = sealed_facts(cfg.name, version, ref.tags, events)
        reason = (unusable or not_a_promotion(events, cfg.name, version, previous, spec.alias)
                  or (refusal(rule, approver, facts) if rule.required else None)
                  or (approvals_short(rule, events, version, approver) if rule.required
                      else None)
                  or _not_staged(events, version, digest))
        window = active_freeze(spec, today or now_utc().date())
        if reason is None and window is not None:
            reason = freeze_reason(window)
        ruled = None if reason else deployment_refusal(policy, "production", version,
                                                       facts or {}, events)
        reason = reason or ruled
        if reason:
            trail.write(event(Action.PROMOTION_REFUSED, "production", previous, version,
                              approver.username, comment, flow_run_id, reason,
                              identity=approver.label()))
            error = DeployError if window is not None and reason.startswith("freeze") \
                else PolicyRefused if ruled or unusable else ApprovalError
            raise error(f"promotion of {cfg.name} v{version} refused: {reason}")
        move_checked(registry, cfg, trail, "promotion", previous, version, approver, comment,
                     flow_run_id, checks, rule)
    return previous


def _not_staged(events: list[dict[str, str]], version: str, digest: str) -> str | None:
    staged = staged_digest(events, version)
    if staged is None:
        return f"v{version} has not passed staging (run the deploy flow first)"
    if staged and digest and staged != digest:
        return f"v{version}'s files changed since it was staged (digest {digest[:12]}…)"
    return None


def rollback(registry: Registry, cfg: ModelConfig, actor: Identity, to_version: str | None = None,
             comment: str = "", today: date | None = None, checks: Checks | None = None, *,
             settings: Settings, policy: LoadedPolicy, key: Key) -> tuple[str, str]:
    """Point the champion back to `to_version`, or to what it was before the current one's
    promotion (both from the trail). Production is never left without a champion."""
    alias = cfg.deploy.production.alias
    rule = _ruled(cfg, settings, policy, key)
    trail = open_trail(registry, cfg, settings, key)
    with trail.locked():
        recovered = finish_interrupted(registry, cfg, trail, checks)
        if recovered:
            log.warning("%s", recovered)
        events = intact_events(trail)
        current = alias_as_recorded(registry, cfg.name, alias, events)
        if current is None:
            raise DeployError(f"{cfg.name} has no {alias} to roll back")
        target: str | None
        if to_version:
            registry.require_version(cfg.name, to_version)
            target = to_version
            reason = None if to_version in former_champions(events, alias) - {current} else (
                f"v{to_version} was never {alias}: rollback only returns to a version production "
                "ran before (promote it instead)")
        else:
            found, target = previous_champion(events, current, alias)
            reason = None if found else (f"no promotion of {cfg.name} v{current} is recorded; "
                                         "name a former champion: mlops rollback "
                                         f"{cfg.name} VERSION")
            if found and target is None:
                reason = (f"v{current} is the first {alias} of {cfg.name}: rolling it back would "
                          "leave production with no champion; promote another version instead")
        who = refusal(rule, actor, None) if rule.required else None
        window = active_freeze(cfg.deploy.production, today or now_utc().date())
        reason = reason or who or (freeze_reason(window) if window else None)
        if reason or target is None:
            reason = reason or "nothing to roll back to"
            trail.write(event(Action.ROLLBACK_REFUSED, "production", current, target,
                              actor.username, comment, reason=reason, identity=actor.label()))
            error = ApprovalError if who and reason == who else DeployError
            raise error(f"rollback of {cfg.name} refused: {reason}")
        move_checked(registry, cfg, trail, "rollback", current, target, actor,
                     comment or "manual rollback", None, checks, rule)
    return current, target


def realign(registry: Registry, cfg: ModelConfig, actor: Identity, comment: str = "", *,
            settings: Settings, policy: LoadedPolicy, key: Key) -> list[str]:
    """Put aliases moved outside the pipeline back where the signed trail says, each with a
    record; what was put back (nothing when they were where recorded)."""
    rule = _ruled(cfg, settings, policy, key)
    who = refusal(rule, actor, None) if rule.required else None
    if who:
        raise ApprovalError(f"realign of {cfg.name} refused: {who}")
    trail = open_trail(registry, cfg, settings, key)
    moved = []
    with trail.locked():
        events = intact_events(trail)
        for alias, environment in ((cfg.deploy.production.alias, "production"),
                                   (cfg.deploy.staging.alias, "staging")):
            live, recorded = registry.alias_version(cfg.name, alias), alias_from(events, alias)
            if live == recorded:
                continue
            registry.move_alias(cfg.name, alias, recorded)
            trail.write(event(Action.ALIAS_REALIGNED, environment, live, recorded, actor.username,
                              comment, reason=f"@{alias} had been moved to v{live} outside the "
                                              "pipeline; put back where the trail says",
                              alias=alias, identity=actor.label()))
            moved.append(f"{cfg.name}@{alias}: v{live or '-'} -> v{recorded or '-'}")
    return moved


@step("promote-production")
def production(registry: Registry, cfg: ModelConfig, version: str, approval: Approval,
               settings: Settings, policy: LoadedPolicy, key: Key) -> str:
    from prefect.runtime import flow_run

    previous = promote(registry, cfg, version, approval.approver, approval.comment,
                       flow_run.get_id(),
                       signed=Signed(settings=settings, policy=policy, key=key))
    return previous or ""
