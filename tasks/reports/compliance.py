"""The compliance report of one model version: a self-contained HTML page an auditor can keep
(tags, the policy and each check's result, lineage, validation, gate, approvals, model card).
Stored beside the version in its MLflow run as `compliance_report.html`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

REPORT_NAME = "compliance_report.html"
LINEAGE_TAGS = ("git_commit", "commit_author", "built_by", "data_fingerprint", "config_hash",
                "code_hash", "run_key", "prefect_flow_run_id", "ci_pipeline_url", "ci_job_url",
                "image", "artifact_sha256", "manifest_sha256")
_STYLE = ("body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}"
          "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #bbb;"
          "padding:3px 8px;text-align:left;vertical-align:top}.ok{color:#0a6b2a}"
          ".bad{color:#b00020;font-weight:bold}pre{white-space:pre-wrap;background:#f6f6f6;"
          "padding:1em}")


def _table(header: tuple[str, ...], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    head = f"<tr>{head}</tr>" if any(header) else ""
    return f"<table>{head}{body}</table>" if rows else "<p>none recorded</p>"


def _verdict(problems: list[str]) -> str:
    if not problems:
        return '<span class="ok">satisfies the policy</span>'
    return '<span class="bad">does NOT satisfy the policy</span><ul>' + "".join(
        f"<li>{escape(p)}</li>" for p in problems) + "</ul>"


# a page of named fields, each passed by keyword (over the argument budget: test_structure.py)
def compliance_html(model: str, version: str, tags: Mapping[str, str], policy_version: str,  # noqa: PLR0913
                    policy_sha256: str, checks: Mapping[str, str],
                    environments: Mapping[str, list[str]], validation: list[str],
                    gate: list[str], records: list[Mapping[str, str]], card: str,
                    generated_at: str) -> str:
    """The page: `environments` maps each environment to why the version may not run there
    under the current policy ([] when it may); `records` are the audit records about the
    version so far (approvals are its promotion records, with the approver's identity)."""
    registered_under = tags.get("policy_sha256", "")
    policy_rows = [("current policy", f"{policy_version} (sha256 {policy_sha256})"),
                   ("registered under", f"{tags.get('policy_version', 'no policy recorded')}"
                                        f" (sha256 {registered_under or '-'})")]
    if registered_under and registered_under != policy_sha256:
        policy_rows.append(("note", "the policy changed since registration: the verdicts below "
                                    "are against the current policy"))
    plain_tags = sorted((k, v) for k, v in tags.items()
                        if not k.startswith(("check.", "policy_")) and k not in LINEAGE_TAGS)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Compliance report: {escape(model)}"
        f" v{escape(version)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Compliance report: {escape(model)} v{escape(version)}</h1>",
        f"<p>Generated {escape(generated_at)}.</p>",
        "<h2>Policy</h2>", _table(("", ""), policy_rows),
        "<h2>Environments</h2>",
        "".join(f"<h3>{escape(env)}</h3>{_verdict(problems)}"
                for env, problems in environments.items()),
        "<h2>Checks</h2>", _table(("check", "result"), sorted(checks.items())),
        "<h2>Tags</h2>", _table(("tag", "value"), plain_tags),
        "<h2>Lineage</h2>", _table(("", ""), [(k, tags[k]) for k in LINEAGE_TAGS if tags.get(k)]),
        "<h2>Validation</h2>", "<ul>" + "".join(f"<li>{escape(v)}</li>" for v in validation)
        + "</ul>",
        "<h2>Gate decision</h2>", "<ul>" + "".join(f"<li>{escape(g)}</li>" for g in gate)
        + "</ul>",
        "<h2>Approvals and release records so far</h2>",
        _table(("seq", "at", "action", "environment", "actor", "identity", "comment / reason"),
               [(r.get("seq", ""), r.get("at", "")[:19], r.get("action", ""),
                 r.get("environment", ""), r.get("actor", ""), r.get("identity", ""),
                 " ".join(x for x in (r.get("comment", ""), r.get("reason", ""),
                                      r.get("check", ""), r.get("result", "")) if x))
                for r in records]),
        "<h2>Model card</h2>", f"<pre>{escape(card)}</pre>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
