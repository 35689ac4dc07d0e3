"""What an approver reads before deciding: the verdict in three lines (gate, staging, change vs
champion), then metrics beside the champion's, slices, data checks and where to look further."""

from __future__ import annotations

from collections.abc import Mapping

from tasks.contracts.release import SmokeReport
from tasks.core.tasktypes import METRICS
from tasks.reports.compliance import REPORT_NAME
from tasks.reports.explanations import change_line, from_metrics, threshold_line, top_line
from tasks.reports.format import delta, fmt


def _link(text: str, url: str | None) -> str:
    return f"[{text}]({url})" if url and url.startswith("http") else (url or "")


# a page of named fields, each passed by keyword (over the argument budget: test_structure.py)
def approval_markdown(model: str, version: str, champion: str | None, tags: Mapping[str, str],  # noqa: PLR0913
                      metrics: Mapping[str, float], params: Mapping[str, str],
                      run_url: str | None, smoke: SmokeReport, approvers: list[str] | None,
                      identity: str = "declared", training_run_url: str | None = None,
                      floor: float | None = None, max_regression: float | None = None,
                      policy_refusal: str | None = None) -> str:
    primary = tags.get("gate_metric", "")
    value, old = metrics.get(f"test_{primary}"), metrics.get(f"champion_{primary}")
    higher = METRICS[primary].higher_is_better if primary in METRICS else True
    bound = ("floor" if higher else "ceiling") if floor is not None else ""
    gate = (f"**Gate passed**: {primary} {fmt(value)}"
            + (f" (the {bound} is {floor:g})" if bound else "")
            + (f", allowed regression vs champion {max_regression:g}"
               if max_regression is not None and champion else ""))
    staging = ("**Staging passed**: " if smoke.passed else "**Staging FAILED**: ") + "; ".join(
        c.removeprefix("ok: ").removeprefix("FAIL: ") for c in smoke.checks[-2:])
    judged = params.get("gate_champion_version")
    if not champion:
        change = "**No champion yet**: this would be the first."
    elif judged == champion and value is not None and old is not None:
        change = (f"**Against champion v{champion}**: {primary} {fmt(value)} vs {fmt(old)} "
                  f"({delta(primary, value, old)})")
    else:
        was = f"v{judged}" if judged and judged != "none" else "no champion"
        change = (f"**Champion now: v{champion}**. This version was judged against {was} when "
                  f"it was trained, not against v{champion}: the columns below compare with "
                  "that, so retrain to compare with today's champion before approving.")
    who = ("Approve with your GitLab identity: `mlops approve " + model + "` with "
           "MLOPS_APPROVER_TOKEN set to your own token (an answer typed in this form is "
           "refused)." if identity == "gitlab" else
           "Identity is declared: the name you type is recorded as given (unverified).")
    lines = [f"## Promote {model} v{version} to production?", "", f"- {gate}", f"- {staging}",
             f"- {change}", "", who + (f" Approvers: {', '.join(approvers)}." if approvers
                                       else ""), "",
             "| metric | candidate | champion | change |", "|---|---|---|---|"]
    for key in sorted(k for k in metrics if k.startswith("test_")):
        name = key.removeprefix("test_")
        champ = metrics.get(f"champion_{name}")
        lines.append(f"| {name} | {fmt(metrics[key])} | {fmt(champ)} | "
                     f"{delta(name, metrics[key], champ) if name in METRICS else ''} |")
    slices = sorted(k for k in metrics if k.startswith("slice.") and k.endswith(f".{primary}"))
    if slices:
        lines += ["", f"{primary} per slice: " + ", ".join(
            f"{k.removeprefix('slice.').removesuffix('.' + primary)} {fmt(metrics[k])}"
            for k in slices)]
    new = from_metrics(metrics)
    if new:
        lines += ["", f"Top features (share of mean |SHAP| on the test set): {top_line(new)}.",
                  f"Against the champion: {change_line(new, from_metrics(metrics, 'champion_shap'))}."]
    if tags.get("decision_threshold"):
        lines += ["", "Decision: " + threshold_line(float(tags["decision_threshold"]),
                                                    tags.get("threshold_rule")) + "."]
    lines += ["", f"Data: {params.get('rows', '?')} rows, {params.get('features', '?')} features "
                  f"(validation report in the MLflow run); fingerprint "
                  f"`{tags.get('data_fingerprint', '?')[:16]}`, commit "
                  f"`{tags.get('git_commit', '?')[:12]}`, built by "
                  f"{tags.get('built_by', 'unknown')}."]
    links = [link for link in (_link("training flow run", training_run_url),
                               _link("MLflow run and plots", run_url)) if link]
    if links:
        lines += ["", "Links: " + " · ".join(links)]
    checks = ", ".join(f"{k.removeprefix('check.')} {v}" for k, v in sorted(tags.items())
                       if k.startswith("check."))
    lines += ["", f"Compliance: policy {tags.get('policy_version', 'not recorded')}"
                  + (f"; checks: {checks}" if checks else "")
                  + f". Report: `{REPORT_NAME}` in the {_link('MLflow run', run_url) or 'run'} "
                  f"(`mlops compliance {model} {version} --report` refreshes it with "
                  "the approvals so far)."]
    if policy_refusal:
        lines += ["", f"**The compliance policy would refuse it in production now**: "
                      f"{policy_refusal}. Approving does not override the policy."]
    lines += ["", "Staging smoke tests:", *[f"- {c}" for c in smoke.checks]]
    return "\n".join(lines)
