"""The deploy flow: staging (serve + smoke tests) → approval → production (with rollback)."""

from __future__ import annotations

from prefect import flow

from tasks.adapters.registries import connect
from tasks.contracts.release import DeployResult
from tasks.core.config import load_config
from tasks.core.settings import Settings
from tasks.release.approval import obtain_approval
from tasks.release.promotion import production
from tasks.release.staging import staging


@flow(name="deploy")
def deploy_model(model: str, version: str, approve_as: str | None = None, comment: str = "",
                 wait: bool = True) -> DeployResult:
    """Stage, approve and promote one registered version."""
    settings = Settings.from_env()
    cfg = load_config(model, settings.config_dir)
    registry = connect(settings)
    alias = cfg.deploy.production.alias
    if registry.alias_version(cfg.name, alias) == version:
        return DeployResult(model=cfg.name, version=version, staging="skipped",
                            production="already champion", champion=version,
                            message=f"{cfg.name} v{version} is already the champion")
    report = staging(registry=registry, cfg=cfg, version=version,
                     actor=approve_as or "pipeline", env=settings.child_env)
    approval = obtain_approval(registry=registry, cfg=cfg, version=version, staging=report,
                               approve_as=approve_as, comment=comment, wait=wait)
    if approval is None:
        return DeployResult(
            model=cfg.name, version=version, staging="passed", production="awaiting approval",
            champion=registry.alias_version(cfg.name, alias),
            message=f"continue with: mlops promote {cfg.name} --version {version} --as NAME")
    previous = production(registry=registry, cfg=cfg, version=version, approval=approval)
    return DeployResult(model=cfg.name, version=version, staging="passed",
                        production=f"promoted by {approval.approver}", champion=version,
                        message=f"{cfg.name}@{alias}: v{previous or '-'} -> v{version}")
