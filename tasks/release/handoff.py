"""From training to deployment on a server: the training run (on a worker) hands the version to
a run of the `deploy/deploy-<model>` deployment and ends. That run stages the version and then waits for
approval suspended, so no runner is held while a person decides."""

from __future__ import annotations

from tasks.contracts.release import DeployResult
from tasks.core.errors import ConfigError
from tasks.core.settings import Settings
from tasks.core.steps import step


@step("start-deploy-run")
def start_deploy_run(model: str, version: str, comment: str = "") -> DeployResult:
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.logging import get_run_logger
    from prefect.runtime import flow_run

    name = f"deploy/deploy-{model}"  # prefect.yaml names it so (deployments/manifest.py)
    tags = [f"model:{model}", f"version:{version}", f"training-run:{flow_run.get_id()}",
            *[t for t in flow_run.tags if t.startswith(("gitlab-pipeline:", "ref:", "sha:"))]]
    try:
        run = run_deployment(name=name, parameters={"model": model, "version": version,
                                                     "comment": comment},
                             timeout=0, as_subflow=False, tags=tags)
    except ObjectNotFound:
        raise ConfigError(f"no deployment {name} on the Prefect server: run `prefect --no-prompt "
                          "deploy --all` (the version is registered; nothing was deployed)") from None
    ui = Settings.from_env().prefect_ui_url
    link = f"{ui}/runs/flow-run/{run.id}" if ui else str(run.id)
    get_run_logger().info("%s v%s goes to %s: run %s stages it and waits for approval: %s",
                          model, version, name, run.name, link)
    return DeployResult(model=model, version=version, staging="in deploy run",
                        production="awaiting approval", champion=None,
                        message=f"{name}: run {run.name} stages v{version}, then waits for "
                                f"approval ({link})")
