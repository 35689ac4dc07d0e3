"""Work pools mapped to GitLab runners: base job templates, and applying them idempotently."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasks.core.errors import ConfigError

POOLS_FILE = Path(__file__).with_name("pools.yaml")
TEMPLATES_DIR = Path(__file__).with_name("pools")
PoolType = Literal["gitlab-ci", "process", "docker"]
POOL_TYPES: tuple[PoolType, ...] = ("gitlab-ci", "process", "docker")


class LaptopSpec(BaseModel):
    """How the pool differs on a laptop's own stack (a process pool, `mlops server start`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: dict[str, str] = Field(default_factory=dict)


class PoolSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    runner_tags: list[str]
    device: Literal["cpu", "cuda"]
    base_image: str
    runners: int = Field(default=1, ge=1)  # GitLab runners (or laptop workers) serving the pool
    env: dict[str, str] = Field(default_factory=dict)
    docker: dict[str, Any] = Field(default_factory=dict)
    laptop: LaptopSpec = Field(default_factory=LaptopSpec)


class LimitsSpec(BaseModel):
    """The `limits:` block of pools.yaml: flow-run heartbeats, when a silent run is a zombie, and
    how many times a crashed run is run again."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    heartbeat_seconds: int = Field(default=30, ge=30)  # Prefect emits no faster (flow_engine)
    zombie_after_seconds: int = Field(default=120, ge=10)
    crashed_reruns: int = Field(default=1, ge=0, le=3)
    rerun_after_seconds: int = Field(default=30, ge=5)

    @model_validator(mode="after")
    def _after_a_missed_beat(self) -> LimitsSpec:
        if self.zombie_after_seconds <= self.heartbeat_seconds:
            raise ValueError(f"limits: zombie_after_seconds ({self.zombie_after_seconds}) must be "
                             f"longer than heartbeat_seconds ({self.heartbeat_seconds})")
        return self


LIMITS_KEY = "limits"
HEARTBEAT_ENV = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"


def _raw(path: Path) -> dict[str, Any]:
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of pool names")
    return raw


def load_pools(path: Path = POOLS_FILE) -> dict[str, PoolSpec]:
    raw = _raw(path)
    try:
        return {name: PoolSpec(name=name, **body) for name, body in raw.items()
                if name != LIMITS_KEY}
    except (ValidationError, TypeError) as exc:
        raise ConfigError(f"{path}: {str(exc).splitlines()[0]}") from None


def load_limits(path: Path = POOLS_FILE) -> LimitsSpec:
    try:
        return LimitsSpec(**(_raw(path).get(LIMITS_KEY) or {}))
    except (ValidationError, TypeError) as exc:
        lines = [ln for ln in str(exc).splitlines()[1:] if ln.strip()][:2]
        raise ConfigError(f"{path}: limits: {' '.join(x.strip() for x in lines)}") from None


def gpu_slots(specs: dict[str, PoolSpec]) -> int:
    """The global `gpu` concurrency limit: one slot per runner of the cuda pools."""
    return sum(spec.runners for spec in specs.values() if spec.device == "cuda")


def _default_template(pool_type: PoolType) -> dict[str, Any]:
    if pool_type == "gitlab-ci":
        from deployments.gitlab_worker import GitLabCIWorker

        return GitLabCIWorker.get_default_base_job_template()
    if pool_type == "process":
        from prefect.workers.process import ProcessWorker

        return ProcessWorker.get_default_base_job_template()
    from prefect_docker.worker import DockerWorker

    return DockerWorker.get_default_base_job_template()


def base_job_template(spec: PoolSpec, pool_type: PoolType, laptop: bool = False,
                      limits: LimitsSpec | None = None) -> dict[str, Any]:
    """The worker type's default template with this pool's defaults filled in (a laptop's own
    process pool: its `laptop:` env on top); every job sends flow-run heartbeats."""
    limits = limits or load_limits()
    template = copy.deepcopy(_default_template(pool_type))
    props = template["variables"]["properties"]
    props["env"]["default"] = {**spec.env, **(spec.laptop.env if laptop else {}),
                               HEARTBEAT_ENV: str(limits.heartbeat_seconds)}
    if pool_type == "gitlab-ci":
        if len(spec.runner_tags) != 1:
            raise ConfigError(f"pool {spec.name}: a gitlab-ci pool has one runner tag (the job "
                              f"takes it from MLOPS_RUNNER_TAG), got {spec.runner_tags}")
        props["runner_tag"]["default"] = spec.runner_tags[0]
        return template
    props["stream_output"]["default"] = True
    if pool_type == "docker":
        props["auto_remove"]["default"] = True
        for key, value in spec.docker.items():
            if key not in props:
                raise ConfigError(f"pool {spec.name}: docker pools have no job variable {key!r}")
            props[key]["default"] = value
    return template


def template_path(name: str, pool_type: PoolType) -> Path:
    return TEMPLATES_DIR / f"{name}.{pool_type}.json"


def render(template: dict[str, Any]) -> str:
    return json.dumps(template, indent=2, sort_keys=True) + "\n"


async def apply_pool(client: Any, spec: PoolSpec, pool_type: PoolType, laptop: bool = False
                     ) -> str:
    """Create the pool, update its template and description, or leave it: 'created' | 'updated' |
    'unchanged'. A pool of another type is an error (Prefect cannot change a pool's type)."""
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    template = base_job_template(spec, pool_type, laptop)
    try:
        current = await client.read_work_pool(spec.name)
    except ObjectNotFound:
        await client.create_work_pool(WorkPoolCreate(
            name=spec.name, type=pool_type, base_job_template=template,
            description=spec.description))
        return "created"
    if current.type != pool_type:
        raise ConfigError(f"work pool {spec.name} is a {current.type} pool, not {pool_type}: "
                          f"delete it (prefect work-pool delete {spec.name}) or apply --type "
                          f"{current.type}")
    if current.base_job_template == template and current.description == spec.description:
        return "unchanged"
    await client.update_work_pool(spec.name, WorkPoolUpdate(
        base_job_template=template, description=spec.description))
    return "updated"


async def apply_pools(specs: dict[str, PoolSpec], pool_type: PoolType, laptop: bool = False
                      ) -> list[tuple[str, str]]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return [(name, await apply_pool(client, spec, pool_type, laptop))
                for name, spec in specs.items()]


if __name__ == "__main__":  # regenerate deployments/pools/*.json after editing pools.yaml
    for pool in load_pools().values():
        for kind in POOL_TYPES:
            template_path(pool.name, kind).write_text(render(base_job_template(pool, kind)))
