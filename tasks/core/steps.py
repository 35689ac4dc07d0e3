"""Shared Prefect task options: what every pipeline step would otherwise repeat."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.errors import retry_transient

# registry, GitLab and Snowflake calls retry on network errors, never on a deliberate refusal
NETWORK_RETRIES = {"retries": 2, "retry_delay_seconds": 3, "retry_condition_fn": retry_transient}


def step(name: str, **options):
    """A pipeline step as a Prefect task. Not cached unless it says how: its inputs are data
    frames and clients, which Prefect's default policy would try to hash."""
    return task(name=name, **{"cache_policy": NO_CACHE, **options})


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lower-case letters, digits and dashes) from names."""
    import re

    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
