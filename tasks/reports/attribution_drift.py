"""The attribution part of the drift report: each feature's share of the model's explanation
(mean |SHAP|) at training beside the batch, features that moved more than allowed marked."""

from __future__ import annotations

import html

from tasks.contracts.batch import DriftReport


def plot_attribution_shares(report: DriftReport, png, limit: int = 15) -> bytes | None:
    """Grouped bars of the largest shares (training vs batch), moved features in red."""
    if not report.attributions:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = sorted(report.attributions,
                  key=lambda a: -max(a.reference_share, a.current_share))[:limit][::-1]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.4))
    ax.barh(y + 0.2, [a.reference_share for a in rows], 0.4, color="#7f8c8d",
            label="reference (training)")
    ax.barh(y - 0.2, [a.current_share for a in rows], 0.4, label="this batch",
            color=["#c0392b" if a.moved else "#2e86c1" for a in rows])
    ax.set_yticks(y, [a.name + (" (moved)" if a.moved else "") for a in rows], fontsize=8)
    ax.set_xlabel("share of mean |SHAP| (tree SHAP)")
    ax.set_title(f"{report.model} v{report.version}: attribution shares "
                 f"(marked when moved > {report.attribution_shift:g})")
    ax.legend(loc="lower right", fontsize=7)
    data = png(fig)
    plt.close(fig)
    return data


def html_section(report: DriftReport, img: str) -> str:
    if not report.attributions:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(a.name)}</td><td>{a.reference_share:.1%}</td>"
        f"<td>{a.current_share:.1%}</td><td>{a.change * 100:+.1f} pp</td>"
        f"<td style='color:{'#c0392b' if a.moved else 'inherit'}'>"
        f"{'moved' if a.moved else 'stable'}</td></tr>" for a in report.attributions)
    return (f"<h2>Attribution drift (share of mean |SHAP|, limit ±{report.attribution_shift:g})"
            f"</h2>{img}<table><tr><th>feature</th><th>training</th><th>batch</th>"
            f"<th>change</th><th>status</th></tr>{rows}</table>")


def markdown_lines(report: DriftReport, limit: int = 10) -> list[str]:
    if not report.attributions:
        return []
    return ["", f"Attribution shares (mean |SHAP|; marked when moved more than "
                f"{report.attribution_shift:g}):", "",
            "| feature | training | batch | change | status |", "|---|---|---|---|---|",
            *[f"| {a.name} | {a.reference_share:.1%} | {a.current_share:.1%} | "
              f"{a.change * 100:+.1f} pp | {'moved' if a.moved else 'stable'} |"
              for a in report.attributions[:limit]]]
