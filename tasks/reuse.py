"""Reuse: find the version an identical earlier run (same data, config, code, device) registered."""

from __future__ import annotations

from tasks.adapters.mlflow_registry import ModelVersionRef
from tasks.adapters.registries import open_registry
from tasks.core.config import ModelConfig
from tasks.core.device import select_device
from tasks.core.lineage import code_hash, run_key, source_fingerprint
from tasks.core.settings import Settings


def run_key_for(cfg: ModelConfig, fingerprint: str, device: str, code: str | None = None) -> str:
    return run_key(fingerprint, cfg.config_hash(), code or code_hash(), device)


def up_to_date(cfg: ModelConfig, settings: Settings) -> ModelVersionRef | None:
    """The registered version this run would reproduce, found without loading data or Prefect.

    None when the data cannot be fingerprinted up front (a query) or nothing matches.
    """
    fingerprint = source_fingerprint(cfg.data)
    if fingerprint is None:
        return None
    key = run_key_for(cfg, fingerprint, select_device(settings.device))
    return open_registry(settings).find_version(cfg.name, key)
