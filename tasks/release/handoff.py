"""From training to deployment on a server: the training run (on a worker) hands the version to
a run of the `deploy/deploy-<model>` deployment and ends. That run stages the version and then waits for
approval suspended, so no runner is held while a person decides."""

from __future__ import annotations

from typing import Any

from tasks.contracts.release import DeployResult
from tasks.core.errors import ConfigError
from tasks.core.settings import CI_FORWARDED
from tasks.core.steps import step
from tasks.core.synced import synced


@step("start-deploy-run")
def start_deploy_run(model: str, version: str, prefect_ui: str | None, comment: str = ""
                     ) -> DeployResult:
    """Start the model's deploy run for the version; prefect_ui (the settings' Prefect UI, if
    any) makes the link people are given."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.logging import get_run_logger
    from prefect.runtime import flow_run

    name = f"deploy/deploy-{model}"  # prefect.yaml names it so (deployments/manifest.py)
    tags = [f"model:{model}", f"version:{version}", f"training-run:{flow_run.get_id()}",
            *[t for t in flow_run.tags if t.startswith(("gitlab-pipeline:", "ref:", "sha:"))]]
    try:
        run = synced(run_deployment(name=name, parameters={"model": model, "version": version,
                                                            "comment": comment},
                                    timeout=0, as_subflow=False, tags=tags,
                                    job_variables=_pipeline_identity(name)))
    except ObjectNotFound:
        raise ConfigError(f"no deployment {name} on the Prefect server: run `prefect --no-prompt "
                          "deploy --all` (the version is registered; nothing was deployed)") from None
    link = f"{prefect_ui}/runs/flow-run/{run.id}" if prefect_ui else str(run.id)
    get_run_logger().info("%s v%s goes to %s: run %s stages it and waits for approval: %s",
                          model, version, name, run.name, link)
    return DeployResult(model=model, version=version, staging="in deploy run",
                        production="awaiting approval", champion=None,
                        message=f"{name}: run {run.name} stages v{version}, then waits for "
                                f"approval ({link})")


def pool_env(pool: Any, deployment: Any) -> dict[str, str]:
    """The env a run would get without us (pool default, then deployment): a flow run's `env`
    job variable replaces it, so what the pool sets (MLOPS_DEVICE=cuda) is carried over."""
    default = (pool.base_job_template.get("variables", {}).get("properties", {})
               .get("env", {}).get("default") or {}) if pool is not None else {}
    return {**default, **((deployment.job_variables or {}).get("env") or {})}


def _pipeline_identity(name: str) -> dict[str, Any] | None:
    """The GitLab pipeline identity this training run was given (MR, commit, job) goes on to the
    deploy run, so its staging and production land on the same MR and commit as GitLab
    deployments; None when the run has none (laptop, schedule)."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    env = (flow_run.get_job_variables() or {}).get("env") or {}
    identity = {k: str(env[k]) for k in CI_FORWARDED if env.get(k)}
    if not identity:
        return None
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(name)
        pool = (client.read_work_pool(deployment.work_pool_name) if deployment.work_pool_name
                else None)
    return {"env": {**pool_env(pool, deployment), **identity}}
