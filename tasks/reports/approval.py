"""What an approver reads before deciding: metrics vs champion, the gate, data checks, the
staging smoke tests and where to look further."""

from __future__ import annotations

from collections.abc import Mapping

from tasks.contracts.release import SmokeReport
from tasks.reports.format import fmt


def approval_markdown(model: str, version: str, champion: str | None, tags: Mapping[str, str],
                      metrics: Mapping[str, float], params: Mapping[str, str],
                      run_url: str | None, smoke: SmokeReport, approvers: list[str] | None
                      ) -> str:
    lines = [f"## Promote {model} v{version} to production?", "",
             f"Current champion: {'v' + champion if champion else 'none'}. "
             f"Gate: {tags.get('gate_metric', '?')} = {tags.get('gate_value', '?')} (passed).", "",
             "| metric | candidate | champion |", "|---|---|---|"]
    for key in sorted(k for k in metrics if k.startswith("test_")):
        name = key.removeprefix("test_")
        lines.append(f"| {name} | {fmt(metrics[key])} | {fmt(metrics.get(f'champion_{name}'))} |")
    if run_url:
        lines += ["", f"Validation: {params.get('rows', '?')} rows, "
                      f"{params.get('features', '?')} features, report in the MLflow run.",
                  f"MLflow run: {run_url}"]
    lines += ["", "Staging smoke tests:", *[f"- {c}" for c in smoke.checks],
              "", f"Data fingerprint `{tags.get('data_fingerprint', '?')[:16]}`, "
                  f"commit `{tags.get('git_commit', '?')[:12]}`."]
    if approvers:
        lines.append(f"Approvers: {', '.join(approvers)}.")
    return "\n".join(lines)
