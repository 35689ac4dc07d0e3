"""Reports posted to GitLab when it is configured: the merge request comment (new or reused
model) and the model's wiki rows. Without GitLab each step is skipped: said in CI (where a
missing token is a mistake), at debug level on a laptop (where it is the normal state)."""

from __future__ import annotations

from tasks.adapters.gitlab import GitLab, open_gitlab, skipped
from tasks.adapters.mlflow_registry import Registry
from tasks.adapters.mlflow_rest import RestRegistry
from tasks.contracts.training import EvalReport, GateDecision
from tasks.core.settings import Settings
from tasks.core.steps import step
from tasks.reports.batch import wiki_header
from tasks.reports.merge_request import marker, merge_request_comment, reused_comment


def flow_run_url(settings: Settings) -> str | None:
    """This flow run in the Prefect UI, when the API is a server people can open."""
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    return f"{settings.prefect_ui_url}/runs/flow-run/{run_id}" if (
        run_id and settings.prefect_ui_url) else None


def say_skipped(what: str, settings: Settings) -> None:
    """`GitLab <what> skipped: set …`, at INFO in a GitLab CI job, at DEBUG elsewhere."""
    import logging

    from prefect.logging import get_run_logger

    level = logging.INFO if settings.ci.get("CI_SERVER_URL") else logging.DEBUG
    get_run_logger().log(level, skipped(what))


def _merge_request(settings: Settings) -> GitLab | None:
    from prefect.logging import get_run_logger

    gitlab = open_gitlab(settings.gitlab)
    if gitlab is None:
        say_skipped("merge request report", settings)
        return None
    if not gitlab.settings.merge_request_iid:
        get_run_logger().info("GitLab merge request report skipped: not a merge request pipeline")
        return None
    return gitlab


def _post(gitlab: GitLab, model: str, body: str) -> str:
    from prefect.logging import get_run_logger

    iid = gitlab.settings.merge_request_iid
    if not iid:  # _merge_request() gave it only for a merge request pipeline
        return "skipped"
    done = gitlab.upsert_note(iid, marker(model), body)
    if done is None:
        return "failed"
    get_run_logger().info(f"merge request !{iid}: model report {done['action']} (note {done['id']})")
    return done["action"]


@step("report-to-merge-request")
def report_merge_request(model: str, report: EvalReport, champion: EvalReport | None,
                         champion_version: str | None, decision: GateDecision, run_url: str,
                         settings: Settings) -> str:
    """Post (or update) the MR comment when this is an MR pipeline with GitLab settings."""
    gitlab = _merge_request(settings)
    if gitlab is None:
        return "skipped"
    images = [md for path in report.plots[:3] if (md := gitlab.upload(path))]
    body = merge_request_comment(model, report, champion, champion_version, decision, run_url,
                                 flow_run_url(settings), images,
                                 gitlab.settings.pipeline_url)
    return _post(gitlab, model, body)


@step("report-reuse-to-merge-request")
def report_reused(registry: Registry | RestRegistry, model: str, version: str, run_id: str | None,
                  settings: Settings, alias: str = "champion") -> str:
    """An MR pipeline that changed nothing about a model still says so on the MR, and where
    the reused version stands against the champion now."""
    gitlab = _merge_request(settings)
    if gitlab is None:
        return "skipped"
    metrics = registry.run_metrics(run_id) if run_id else {}
    run_url = registry.run_url(run_id) if run_id else "unknown run"
    return _post(gitlab, model, reused_comment(model, version, metrics, run_url,
                                               flow_run_url(settings),
                                               gitlab.settings.pipeline_url,
                                               registry.alias_version(model, alias)))


@step("write-wiki-row")
def write_wiki_row(model: str, row: str, settings: Settings) -> str:
    """One dated row on the model's wiki page (mlops/<model>) when GitLab is configured."""
    gitlab = open_gitlab(settings.gitlab)
    if gitlab is None:
        say_skipped("wiki page", settings)
        return "skipped"
    return gitlab.prepend_wiki_row(f"mlops/{model}", wiki_header(model), row) or "failed"
