"""Production as it is now, before scoring, monitoring or offering a version: the champion the
signed trail names (its alias compared with the trail), and whether a version would move
production forward."""

from __future__ import annotations

from tasks.adapters.audit_trail import AuditTrail
from tasks.adapters.mlflow_registry import Registry
from tasks.contracts.release import Proposal
from tasks.core.chain import Key
from tasks.core.config import ModelConfig
from tasks.core.settings import Settings
from tasks.core.steps import NETWORK_RETRIES, step
from tasks.release.guard import alias_as_recorded, not_a_promotion


@step("champion-as-recorded", **NETWORK_RETRIES)
def recorded_champion(registry: Registry, cfg: ModelConfig, settings: Settings, key: Key
                      ) -> str | None:
    """The champion to score or monitor with, after comparing the alias with the trail."""
    events = AuditTrail(registry, cfg.name, settings=settings, key=key).events()
    return alias_as_recorded(registry, cfg.name, cfg.deploy.production.alias, events)


@step("judge-proposal", **NETWORK_RETRIES)
def judge_proposal(registry: Registry, cfg: ModelConfig, version: str, settings: Settings,
                   key: Key) -> Proposal:
    """Is `version` a promotion from production as it is now? (Before staging or asking.)"""
    events = AuditTrail(registry, cfg.name, settings=settings, key=key).events()
    alias = cfg.deploy.production.alias
    champion = alias_as_recorded(registry, cfg.name, alias, events)
    return Proposal(champion=champion,
                    refusal=not_a_promotion(events, cfg.name, version, champion, alias))
