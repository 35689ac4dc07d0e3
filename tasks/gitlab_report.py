"""What GitLab shows of a run: the merge request comment comparing the new model with the
champion, and promotions/rollbacks as deployments in GitLab environments."""

from __future__ import annotations

import logging

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.adapters.gitlab import GitLab, GitLabSettings, open_gitlab, skipped
from tasks.core.tasktypes import METRICS
from tasks.evaluate import EvalReport
from tasks.gate import GateDecision

log = logging.getLogger("mlops.gitlab")
ENVIRONMENT_ACTIONS = {"staged": ("staging", "success"), "staging-failed": ("staging", "failed"),
                       "promoted": ("production", "success"),
                       "rolled-back": ("production", "success")}


def marker(model: str) -> str:
    return f"<!-- prefect-mlops:model-report:{model} -->"


def _delta(metric: str, new: float, old: float | None) -> str:
    if old is None:
        return ""
    diff = new - old
    better = diff > 0 if METRICS[metric].higher_is_better else diff < 0
    arrow = "▲" if better else ("▼" if diff else "=")
    return f"{diff:+.4f} {arrow}"


def _links(run_url: str, flow_run: str | None, pipeline_url: str | None) -> str:
    links = [f"[MLflow run]({run_url})" if run_url.startswith("http") else f"MLflow: {run_url}"]
    if flow_run:
        links.append(f"[Prefect flow run]({flow_run})")
    if pipeline_url:
        links.append(f"[pipeline]({pipeline_url})")
    return " · ".join(links)


def merge_request_comment(model: str, report: EvalReport, champion: EvalReport | None,
                          champion_version: str | None, decision: GateDecision, run_url: str,
                          flow_run_url: str | None, images: list[str],
                          pipeline_url: str | None = None) -> str:
    """Markdown: verdict, metrics vs champion with deltas, the primary metric per slice, the
    gate's reasons, links and plots. The hidden marker lets a re-run find and replace it."""
    verdict = "✅ passed" if decision.passed else "❌ rejected"
    against = f"champion v{champion_version}" if champion_version else "no champion yet"
    lines = [marker(model), f"### Model report: `{model}` — gate {verdict}", "",
             f"Compared with {against} on this run's test set ({report.test_rows:,} rows).", "",
             "| metric | this MR | champion | Δ |", "|---|---|---|---|"]
    for name, value in report.metrics.items():
        old = champion.metrics.get(name) if champion else None
        lines.append(f"| {name} | {value:.4f} | {'' if old is None else f'{old:.4f}'} | "
                     f"{_delta(name, value, old)} |")
    primary = report.primary_metric
    rows = report.slice_table(primary)
    if rows:
        lines += ["", f"<details><summary>{primary} per slice</summary>", "",
                  "| slice | this MR | champion | rows |", "|---|---|---|---|"]
        for col, value, metric, n in rows:
            old = ((champion.slices.get(col) or {}).get(value) or {}).get(primary) if champion else None
            lines.append(f"| {col}={value} | {metric:.4f} | {'' if old is None else f'{old:.4f}'} "
                         f"| {n} |")
        lines += ["", "</details>"]
    lines += ["", "**Gate**", *[f"- {'✅' if c.passed else '❌'} {c.detail}" for c in decision.checks]]
    lines += ["", _links(run_url, flow_run_url, pipeline_url)]
    if images:
        lines += ["", *images]
    return "\n".join(lines) + "\n"


def flow_run_url() -> str | None:
    import os

    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    api = os.environ.get("PREFECT_API_URL", "")
    if not (ctx and ctx.flow_run and api.startswith("http")):
        return None
    return f"{api.removesuffix('/api').rstrip('/')}/runs/flow-run/{ctx.flow_run.id}"


def reused_comment(model: str, version: str, metrics: dict[str, float], run_url: str,
                   flow_run: str | None, pipeline_url: str | None = None) -> str:
    """The comment when nothing changed: the registered version's own metrics."""
    rows = sorted(k.removeprefix("test_") for k in metrics if k.startswith("test_"))
    lines = [marker(model), f"### Model report: `{model}` — unchanged, v{version} reused", "",
             "Data, config and code are the same as when v" + version + " was trained: nothing "
             "was retrained. Its test metrics:", "", "| metric | v" + version + " | champion then |",
             "|---|---|---|",
             *[f"| {n} | {metrics[f'test_{n}']:.4f} | "
               f"{'' if f'champion_{n}' not in metrics else format(metrics[f'champion_{n}'], '.4f')} |"
               for n in rows]]
    return "\n".join([*lines, "", _links(run_url, flow_run, pipeline_url)]) + "\n"


def _merge_request() -> GitLab | None:
    from prefect.logging import get_run_logger

    gitlab = open_gitlab()
    if gitlab is None or not gitlab.settings.merge_request_iid:
        get_run_logger().info(skipped("merge request report") if gitlab is None else
                              "GitLab merge request report skipped: not a merge request pipeline")
        return None
    return gitlab


def _post(gitlab: GitLab, model: str, body: str) -> str:
    from prefect.logging import get_run_logger

    iid = gitlab.settings.merge_request_iid
    done = gitlab.upsert_note(iid, marker(model), body)
    if done is None:
        return "failed"
    get_run_logger().info(f"merge request !{iid}: model report {done['action']} (note {done['id']})")
    return done["action"]


@task(name="report-to-merge-request", cache_policy=NO_CACHE)
def report_merge_request(model: str, report: EvalReport, champion: EvalReport | None,
                         champion_version: str | None, decision: GateDecision, run_url: str
                         ) -> str:
    """Post (or update) the MR comment when this is an MR pipeline with GitLab settings."""
    gitlab = _merge_request()
    if gitlab is None:
        return "skipped"
    images = [md for path in report.plots[:3] if (md := gitlab.upload(path))]
    body = merge_request_comment(model, report, champion, champion_version, decision, run_url,
                                 flow_run_url(), images, gitlab.settings.pipeline_url)
    return _post(gitlab, model, body)


@task(name="report-reuse-to-merge-request", cache_policy=NO_CACHE)
def report_reused(registry, model: str, version: str, run_id: str | None) -> str:
    """An MR pipeline that changed nothing about a model still says so on the MR."""
    gitlab = _merge_request()
    if gitlab is None:
        return "skipped"
    metrics = registry.run_metrics(run_id) if run_id else {}
    run_url = registry.run_url(run_id) if run_id else "unknown run"
    return _post(gitlab, model, reused_comment(model, version, metrics, run_url, flow_run_url(),
                                               gitlab.settings.pipeline_url))


def mirror_to_environment(action: str, gitlab: GitLab | None = None) -> str | None:
    """Record a staging/production change as a GitLab deployment (sha and ref of this
    pipeline); returns the environment, or None when GitLab is not configured or refused."""
    if action not in ENVIRONMENT_ACTIONS:
        return None
    gitlab = gitlab or open_gitlab()
    if gitlab is None:
        return None
    settings: GitLabSettings = gitlab.settings
    if not (settings.sha and settings.ref):
        log.info("GitLab deployment skipped: CI_COMMIT_SHA / CI_COMMIT_REF_NAME not set")
        return None
    environment, status = ENVIRONMENT_ACTIONS[action]
    made = gitlab.record_deployment(environment, status, settings.sha, settings.ref)
    return environment if made else None


def wiki_header(model: str) -> str:
    return (f"# {model}: batch scoring and monitoring\n\nWritten by prefect-mlops after every "
            "scoring and monitoring run, newest first.\n\n"
            "| when (UTC) | run | version | rows | result | details |\n|---|---|---|---|---|---|")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def scoring_row(summary) -> str:
    shown = ", ".join(f"{k} {v:.3g}" for k, v in list(summary.distribution.items())[:3])
    return (f"| {summary.scored_at[:16].replace('T', ' ')} | batch-scoring | v{summary.version} | "
            f"{summary.rows:,} | {summary.rows_per_s:,.0f} rows/s → {_cell(summary.output)} | "
            f"{_cell(shown)} |")


def monitoring_row(report, when: str) -> str:
    worst = max(report.columns, key=lambda c: c.psi, default=None)
    details = f"largest PSI {worst.name} {worst.psi:.3f}" if worst else report.message
    if report.metric_current is not None:
        details += f"; {report.metric} {report.metric_current:.4f}"
    link = f" ([report]({report.mlflow_run}))" if (report.mlflow_run or "").startswith("http") else ""
    return (f"| {when} | monitoring | v{report.version} | {report.rows:,} | "
            f"**{report.verdict}** | {_cell(details)}{link} |")


@task(name="write-wiki-row", cache_policy=NO_CACHE)
def write_wiki_row(model: str, row: str) -> str:
    """One dated row on the model's wiki page (mlops/<model>) when GitLab is configured."""
    from prefect.logging import get_run_logger

    gitlab = open_gitlab()
    if gitlab is None:
        get_run_logger().info(skipped("wiki page"))
        return "skipped"
    return gitlab.prepend_wiki_row(f"mlops/{model}", wiki_header(model), row) or "failed"
