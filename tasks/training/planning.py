"""Run planning: what this execution is (run key from data, config, code and device; study;
lineage tags) and whether an identical earlier run already registered a version to reuse."""

from __future__ import annotations

from datetime import date

from tasks.adapters.mlflow_registry import Registry
from tasks.adapters.mlflow_rest import RestRegistry
from tasks.contracts.training import RunPlan
from tasks.core.config import ModelConfig
from tasks.core.device import select_device
from tasks.core.lineage import code_hash, lineage_tags
from tasks.core.settings import Settings
from tasks.core.steps import step
from tasks.training.fingerprint import run_key_for


def make_plan(cfg: ModelConfig, fingerprint: str, settings: Settings,
              registry: Registry | RestRegistry,
              flow_run_id: str | None, as_of: date | None = None,
              data_at: str | None = None) -> RunPlan:
    device = select_device(settings.device, settings.cuda_visible_devices)
    code = code_hash()
    key = run_key_for(cfg, fingerprint, device, code)
    existing = registry.find_version(cfg.name, key)
    work = settings.cache_dir / cfg.name / key[:16]
    tags = lineage_tags(fingerprint, cfg.config_hash(), code, key, flow_run_id, ci=settings.ci,
                        image=settings.image, user=settings.user)
    if as_of is not None:  # a rebuild reads the data up to the same day
        tags["as_of"] = as_of.isoformat()
    if data_at is not None:  # a query's time-travel point: the same rows can be read again
        tags["data_at"] = data_at
    return RunPlan(
        run_key=key, device=device, study_name=f"{cfg.name}-{key[:16]}",
        plot_dir=str(work / "plots"),
        tags=tags,
        existing_version=existing.version if existing else None,
    )


@step("plan-run")
def plan_run(cfg: ModelConfig, fingerprint: str, settings: Settings,
             registry: Registry | RestRegistry,
             as_of: date | None = None, data_at: str | None = None) -> RunPlan:
    """Derive the run key from data, config, code and device; find an identical earlier version."""
    from prefect.context import FlowRunContext
    from prefect.logging import get_run_logger
    from prefect.runtime import flow_run

    plan = make_plan(cfg, fingerprint, settings, registry, flow_run.get_id(), as_of, data_at)
    run = getattr(FlowRunContext.get(), "flow_run", None)  # a worker's run: the pool it is on
    pool = getattr(run, "work_pool_name", None) or cfg.training.work_pool
    if (note := cpu_fallback(cfg.name, pool, settings.device, plan.device)) is not None:
        get_run_logger().warning(note)
    return plan


def cpu_fallback(model: str, pool: str, preference: str, device: str) -> str | None:
    """A warning when a run on a GPU pool trains on CPU because no GPU is here (a laptop's own
    gpu-runners pool runs MLOPS_DEVICE=auto; GitLab's GPU runners keep cuda and fail instead)."""
    if preference == "auto" and device == "cpu" and "gpu" in pool:
        return (f"{model}: no CUDA device here, training on CPU instead of a GPU runner "
                f"(its pool is {pool}): slower, and its run key differs from a GPU run's")
    return None


@step("reuse-version")
def reused_metrics(registry: Registry | RestRegistry, cfg: ModelConfig, version: str
                   ) -> tuple[str | None, float | None]:
    """Metrics of an identical earlier version, so a re-run reports without retraining."""
    from prefect.logging import get_run_logger

    ref = registry.require_version(cfg.name, version)
    get_run_logger().info("unchanged data, config and code: reusing %s v%s", cfg.name, version)
    metrics = registry.run_metrics(ref.run_id) if ref.run_id else {}
    return ref.run_id, metrics.get(f"test_{cfg.gate.metric}")
