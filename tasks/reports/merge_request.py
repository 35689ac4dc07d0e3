"""The merge request comment: the new model beside the champion, the gate, links and plots.
A hidden marker per model lets a re-run find and replace its comment."""

from __future__ import annotations

from tasks.contracts.explanations import ALL
from tasks.contracts.training import EvalReport, GateDecision
from tasks.reports.compliance import REPORT_NAME
from tasks.reports.explanations import change_line, threshold_line, top_line
from tasks.reports.format import delta, fmt


def marker(model: str) -> str:
    return f"<!-- prefect-mlops:model-report:{model} -->"


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
        lines.append(f"| {name} | {fmt(value)} | {fmt(old)} | "
                     f"{delta(name, value, old)} |")
    primary = report.primary_metric
    rows = report.slice_table(primary)
    if rows:
        lines += ["", f"<details><summary>{primary} per slice</summary>", "",
                  "| slice | this MR | champion | rows |", "|---|---|---|---|"]
        for col, level, metric, n in rows:
            old = ((champion.slices.get(col) or {}).get(level) or {}).get(primary) if champion else None
            lines.append(f"| {col}={level} | {fmt(metric)} | {fmt(old)} "
                         f"| {n} |")
        lines += ["", "</details>"]
    new = report.attributions.get(ALL, {})
    if new:
        before = champion.attributions.get(ALL) if champion else None
        lines += ["", f"**Top features** (share of mean |SHAP| on the test set): {top_line(new)}",
                  f"**Against the champion**: {change_line(new, before)}"]
    if report.threshold is not None:
        lines += ["", f"**Decision**: {threshold_line(report.threshold, report.threshold_rule)}"]
    lines += ["", "**Gate**", *[f"- {'✅' if c.passed else '❌'} {c.detail}" for c in decision.checks]]
    lines += ["", _links(run_url, flow_run_url, pipeline_url)]
    if decision.passed:
        lines += ["", f"Compliance report (tags, policy, checks, lineage): `{REPORT_NAME}` in "
                      "the MLflow run once the version is registered."]
    if images:
        lines += ["", *images]
    return "\n".join(lines) + "\n"


def reused_comment(model: str, version: str, metrics: dict[str, float], run_url: str,
                   flow_run: str | None, pipeline_url: str | None = None,
                   champion: str | None = None) -> str:
    """The comment when nothing changed: the registered version's own metrics, and where it
    stands against production now (a version that is not newer is never offered)."""
    rows = sorted(k.removeprefix("test_") for k in metrics if k.startswith("test_"))
    lines = [marker(model), f"### Model report: `{model}` — unchanged, v{version} reused", "",
             "Data, config and code are the same as when v" + version + " was trained: nothing "
             "was retrained. Its test metrics:", "", "| metric | v" + version + " | champion then |",
             "|---|---|---|",
             *[f"| {n} | {fmt(metrics[f'test_{n}'])} | {fmt(metrics.get(f'champion_{n}'))} |"
               for n in rows]]
    if champion == version:
        lines += ["", f"v{version} is the champion: no approval is asked."]
    elif champion:
        lines += ["", f"Production runs v{champion} now: v{version} is compared with the champion "
                      "of its own training, and a promotion is offered only when it is newer than "
                      f"v{champion} and was never champion (going back is `mlops rollback "
                      f"{model} {version}`, for a former champion)."]
    return "\n".join([*lines, "", _links(run_url, flow_run, pipeline_url)]) + "\n"
