"""prefect.yaml read as Prefect reads it, and checked against configs/models and the pools."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deployments.pools import load_pools
from tasks.contracts.batch import DRIFT_EVENT
from tasks.core.config import ModelConfig, list_configs
from tasks.core.errors import ConfigError
from tasks.core.redact import redact

TRAINING_ENTRYPOINT = "flows/training.py:training_pipeline"
TRAINING_FLOW = "training-pipeline"
WEEKLY_CRON = "0 2 * * 1"
NOTEBOOK_ENTRYPOINT = "flows/notebook.py:notebook_training"
NOTEBOOK_FLOW = "notebook-training"
NOTEBOOK_DEPLOYMENT = f"{NOTEBOOK_FLOW}/notebooks"
DEPLOY_ENTRYPOINT = "flows/deploy.py:deploy_model"
DEPLOY_FLOW = "deploy"
HPO_ENTRYPOINT = "flows/hpo_worker.py:hpo_worker"
HPO_FLOW = "hpo-worker"
EXPIRY_ENTRYPOINT = "flows/approval_expiry.py:approval_expiry"
EXPIRY_FLOW = "approval-expiry"
# every model also scores and is monitored every day
DAILY_FLOWS = {"flows/scoring.py:batch_scoring": "batch-scoring",
               "flows/monitoring.py:monitoring": "monitoring"}
# per-model deployment names, unique across flows: the Prefect UI lists deployments by name
# (training keeps <model>: CI and schedules address training-pipeline/<model>)
NAMES = {TRAINING_FLOW: "{model}", DEPLOY_FLOW: "deploy-{model}", "batch-scoring": "score-{model}",
         "monitoring": "monitor-{model}", HPO_FLOW: "hpo-{model}"}
# training-pipeline/retrain-<model>: the drift-triggered retraining, with its own limit
RETRAIN_NAME = "retrain-{model}"
# (flow, name pattern) -> the deployment concurrency prefect.yaml must set: two promotions of a
# model wait in line; a drift storm starts one retrain and cancels the others
LIMITS = {(DEPLOY_FLOW, NAMES[DEPLOY_FLOW]): (1, "ENQUEUE"),
          (TRAINING_FLOW, RETRAIN_NAME): (1, "CANCEL_NEW")}


def flow_of(entrypoint: str | None) -> str:
    """The flow a prefect.yaml entrypoint names (the entrypoint itself when it is not ours)."""
    flows = {TRAINING_ENTRYPOINT: TRAINING_FLOW, NOTEBOOK_ENTRYPOINT: NOTEBOOK_FLOW,
             DEPLOY_ENTRYPOINT: DEPLOY_FLOW, EXPIRY_ENTRYPOINT: EXPIRY_FLOW,
             HPO_ENTRYPOINT: HPO_FLOW, **DAILY_FLOWS}
    return flows.get(entrypoint or "", entrypoint or "?")


def deployment_name(flow: str, model: str) -> str:
    """`<flow>/<name>` of a model's deployment of `flow` (`batch-scoring/score-fraud`)."""
    return f"{flow}/{NAMES[flow].format(model=model)}"


@dataclass(frozen=True)
class DeploymentEntry:
    name: str
    flow: str
    model: str | None
    work_pool: str | None
    schedules: list[dict[str, Any]]
    triggers: Sequence[dict[str, Any]] = ()
    concurrency: tuple[int | None, str | None] = (None, None)  # limit, collision strategy
    credentials: tuple[str, ...] = ()  # parameters holding them (the server would show them)

    @property
    def full_name(self) -> str:
        return f"{self.flow}/{self.name}"


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path} does not exist")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {str(exc).splitlines()[0]}") from None


def cron_schedules(path: Path) -> list[tuple[str, list[dict[str, Any]]]]:
    """(`<flow>/<name>`, its cron schedules) of each deployment in a prefect.yaml, read as plain
    YAML: not validated, and no Prefect import (1.5 s of CPU), for `mlops status` with no server
    to ask; `mlops check-deployments` and `prefect deploy` validate the file."""
    raw = _read_yaml(path)
    deployments = raw.get("deployments") if isinstance(raw, dict) else None
    if not isinstance(deployments, list):
        raise ConfigError(f"{path}: no list of deployments")
    return [(f"{flow_of(d.get('entrypoint'))}/{d.get('name') or ''}",
             [s for s in d.get("schedules") or [] if isinstance(s, dict) and s.get("cron")])
            for d in deployments if isinstance(d, dict)]


def load_manifest(path: Path) -> list[DeploymentEntry]:
    """Deployments of a prefect.yaml, validated with Prefect's own model of the file."""
    from prefect.cli.deploy._models import PrefectYamlModel
    from pydantic import ValidationError

    raw = _read_yaml(path)
    try:
        model = PrefectYamlModel.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {str(exc).splitlines()[0]}") from None
    return [
        DeploymentEntry(
            name=d.name or "",
            flow=flow_of(d.entrypoint),
            model=d.parameters.get("model"),
            work_pool=d.work_pool.name if d.work_pool else None,
            schedules=[s.model_dump(exclude_none=True) for s in (d.schedules or [])
                       if not isinstance(s, dict)],  # an empty entry schedules nothing
            triggers=[t if isinstance(t, dict) else t.model_dump() for t in (d.triggers or [])],
            concurrency=_concurrency(d.concurrency_limit),
            credentials=tuple(k for k, v in d.parameters.items()
                              if isinstance(v, str) and redact(v) != v),
        )
        for d in model.deployments
    ]


def check_manifest(path: Path, config_dir: Path) -> list[str]:
    """Every problem between prefect.yaml, the model configs and the pools, one line each."""
    deployments = load_manifest(path)
    configs = {p.stem: c for p, c in list_configs(config_dir) if not isinstance(c, ConfigError)}
    everything = [d for d in deployments if d.flow == TRAINING_FLOW]
    training = [d for d in everything if not d.name.startswith("retrain-")]
    retrains = {d.model: d for d in everything if d.name == RETRAIN_NAME.format(model=d.model)}
    problems = [p for d in training
                for p in _training_problems(path, config_dir, d, configs, retrains.get(d.model))]
    problems += _limit_problems(path, deployments)
    problems += _hpo_problems(path, config_dir, deployments, configs, load_pools())
    problems += _naming_problems(path, deployments)
    problems += [f"{path}: deployment {d.full_name} parameter {key!r} holds credentials: write "
                 "the URL redacted (http://***@host/…) and give the worker the full one in "
                 "MLOPS_DATA_URLS_BLOCK (a Secret block) or MLOPS_DATA_URLS"
                 for d in deployments for key in d.credentials]
    problems += _coverage_problems(path, config_dir, deployments, configs,
                                   {d.model for d in training if d.model})
    return problems


def _training_problems(path: Path, config_dir: Path, d: DeploymentEntry,
                       configs: dict[str, ModelConfig], retrain: DeploymentEntry | None
                       ) -> list[str]:
    """A training deployment against its model's config, and its retrain-on-drift twin."""
    if not d.model:
        return [f"{path}: deployment {d.full_name} has no 'model' parameter"]
    if d.model not in configs:
        return [f"{path}: deployment {d.full_name} names model {d.model!r}, which has "
                f"no config in {config_dir}"]
    problems = []
    wanted = configs[d.model].training.work_pool
    if d.work_pool != wanted:
        problems.append(f"{path}: deployment {d.full_name} uses work pool {d.work_pool!r} but "
                        f"{config_dir}/{d.model}.yaml says training.work_pool: {wanted}")
    if not any(s.get("cron") == WEEKLY_CRON and s.get("slug") for s in d.schedules):
        problems.append(f"{path}: deployment {d.full_name} lacks the weekly retrain schedule "
                        f"(cron {WEEKLY_CRON!r} with a slug)")
    name = f"{TRAINING_FLOW}/{RETRAIN_NAME.format(model=d.model)}"
    if retrain is None:
        return [*problems, f"{path}: model {d.model!r} has no {name} deployment (retraining "
                           "on drift)"]
    if not any(_retrains_on_drift(t, d.model) for t in retrain.triggers):
        problems.append(f"{path}: deployment {name} has no trigger on {DRIFT_EVENT} "
                        f"matching prefect.resource.id mlops.model.{d.model}")
    if retrain.work_pool != wanted:
        problems.append(f"{path}: deployment {name} uses work pool {retrain.work_pool!r} "
                        f"but {config_dir}/{d.model}.yaml says training.work_pool: {wanted}")
    return problems


def _coverage_problems(path: Path, config_dir: Path, deployments: list[DeploymentEntry],
                       configs: dict[str, ModelConfig], deployed: set[str]) -> list[str]:
    """Every model has its daily, deploy and training deployments on a pool that exists, and
    the expiry flow listens for failed runs."""
    problems = []
    for flow in DAILY_FLOWS.values():
        daily = {d.model: d for d in deployments if d.flow == flow}
        for name in sorted(configs):
            entry = daily.get(name)
            if entry is None:
                problems.append(f"{config_dir}/{name}.yaml has no {deployment_name(flow, name)} "
                                f"deployment in {path}")
            elif not any(s.get("cron", "").split()[2:] == ["*", "*", "*"] and s.get("slug")
                         for s in entry.schedules):
                problems.append(f"{path}: deployment {entry.full_name} lacks a daily schedule "
                                "with a slug")
    deploys = {d.model for d in deployments if d.flow == DEPLOY_FLOW}
    for name in sorted(set(configs) - deploys):
        problems.append(f"{config_dir}/{name}.yaml has no {deployment_name(DEPLOY_FLOW, name)} "
                        f"deployment in {path} (training runs on workers hand their versions to "
                        "it)")
    expiry = [d for d in deployments if d.flow == EXPIRY_FLOW]
    if not any(any("prefect.flow-run.Failed" in (t.get("expect") or []) for t in d.triggers)
               for d in expiry):
        problems.append(f"{path}: no {EXPIRY_FLOW} deployment with a trigger on "
                        "prefect.flow-run.Failed (unanswered approvals would not be recorded)")
    yaml_pools = {d.work_pool for d in deployments if d.work_pool}
    for name, cfg in sorted(configs.items()):
        if cfg.training.work_pool not in yaml_pools:
            problems.append(f"{config_dir}/{name}.yaml names work pool "
                            f"{cfg.training.work_pool!r}, which {path} lacks (it has: "
                            f"{', '.join(sorted(yaml_pools)) or 'none'})")
        elif name not in deployed:
            problems.append(f"{config_dir}/{name}.yaml has no {TRAINING_FLOW}/{name} deployment "
                            f"in {path}")
    for pool in sorted(yaml_pools - set(load_pools())):
        problems.append(f"{path}: work pool {pool!r} is not defined in deployments/pools.yaml")
    return problems


def _naming_problems(path: Path, deployments: list[DeploymentEntry]) -> list[str]:
    """Names that say which model and purpose (`score-fraud`), each used once in the file."""
    problems = []
    seen: dict[str, str] = {}
    for d in deployments:
        retrain = d.flow == TRAINING_FLOW and d.name == RETRAIN_NAME.format(model=d.model)
        if (d.flow in NAMES and d.model and not retrain
                and d.full_name != deployment_name(d.flow, d.model)):
            problems.append(f"{path}: deployment {d.full_name} serves model {d.model!r}; name it "
                            f"{deployment_name(d.flow, d.model).split('/', 1)[1]!r}")
        if d.name in seen:
            problems.append(f"{path}: deployment name {d.name!r} is used by {seen[d.name]} and "
                            f"{d.full_name}; the Prefect UI lists deployments by name")
        seen.setdefault(d.name, d.full_name)
    return problems


def _retrains_on_drift(trigger: dict[str, Any], model: str) -> bool:
    match = trigger.get("match") or {}
    return (DRIFT_EVENT in (trigger.get("expect") or [])
            and match.get("prefect.resource.id") == f"mlops.model.{model}"
            and (trigger.get("parameters") or {}).get("model", model) == model)


def _concurrency(spec: Any) -> tuple[int | None, str | None]:
    if spec is None or isinstance(spec, int):
        return spec, None
    return spec.limit, spec.collision_strategy


def _limit_problems(path: Path, deployments: list[DeploymentEntry]) -> list[str]:
    """Every deploy-<model> and retrain-<model> has its concurrency limit and strategy."""
    problems = []
    for d in deployments:
        for (flow, pattern), (limit, strategy) in LIMITS.items():
            if d.flow != flow or not d.model or d.name != pattern.format(model=d.model):
                continue
            if d.concurrency != (limit, strategy):
                problems.append(f"{path}: deployment {d.full_name} needs concurrency_limit: "
                                f"{{limit: {limit}, collision_strategy: {strategy}}} (has "
                                f"limit {d.concurrency[0]}, {d.concurrency[1] or 'no strategy'})")
    return problems


def _hpo_problems(path: Path, config_dir: Path, deployments: list[DeploymentEntry],
                  configs: dict[str, Any], pools: dict[str, Any]) -> list[str]:
    """Every model has hpo-worker/hpo-<model> on its training pool, capped at the pool's runners
    (a training run with training.workers > 1 starts its runs; more than the runners would queue
    in GitLab while holding a concurrency slot)."""
    problems = []
    hpo = {d.model: d for d in deployments if d.flow == HPO_FLOW}
    for name, cfg in sorted(configs.items()):
        full = deployment_name(HPO_FLOW, name)
        entry = hpo.get(name)
        if entry is None:
            problems.append(f"{config_dir}/{name}.yaml has no {full} deployment in {path} "
                            "(training.workers > 1 starts its runs)")
            continue
        pool = cfg.training.work_pool
        if entry.work_pool != pool:
            problems.append(f"{path}: deployment {full} uses work pool {entry.work_pool!r} but "
                            f"{config_dir}/{name}.yaml says training.work_pool: {pool}")
        runners = pools[pool].runners if pool in pools else None
        if runners is not None and entry.concurrency != (runners, "ENQUEUE"):
            problems.append(f"{path}: deployment {full} needs concurrency_limit: {{limit: "
                            f"{runners}, collision_strategy: ENQUEUE}} ({pool} has {runners} "
                            f"runner(s) in deployments/pools.yaml; has limit "
                            f"{entry.concurrency[0]}, {entry.concurrency[1] or 'no strategy'})")
    return problems
