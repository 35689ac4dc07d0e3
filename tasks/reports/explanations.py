"""How explanations and the decision threshold read in the model card, the approval form and
the merge request: the top features by share of mean |SHAP|, and against the champion which
features gained or lost weight."""

from __future__ import annotations

from collections.abc import Mapping

from tasks.contracts import explanations

SHAP_PREFIX = "shap"
MOVED = 0.01  # share changes below one percentage point are not worth a line


def from_metrics(metrics: Mapping[str, float], prefix: str = SHAP_PREFIX) -> dict[str, float]:
    """Mean |SHAP| per feature back from run metrics (what the approval form has)."""
    head = f"{prefix}."
    return {k.removeprefix(head): v for k, v in metrics.items() if k.startswith(head)}


def top_line(means: Mapping[str, float], k: int = 5) -> str:
    if not means:
        return "no explanations recorded"
    parts = explanations.shares(dict(means))
    return ", ".join(f"{f} {parts[f]:.0%}" for f, _ in explanations.top_features(dict(means), k))


def change_line(new: Mapping[str, float], old: Mapping[str, float] | None, k: int = 3) -> str:
    """`gained: a +4.1 pp, b +1.2 pp; lost: c -3.0 pp` (share of the explanation, vs champion)."""
    if not new or not old:
        return "no champion explanations to compare with"
    moved = explanations.share_changes(dict(new), dict(old))
    gained = sorted((d, f) for f, d in moved.items() if d >= MOVED)[::-1][:k]
    lost = sorted((d, f) for f, d in moved.items() if d <= -MOVED)[:k]
    if not gained and not lost:
        return f"no feature's share moved by {MOVED:.0%} or more"
    text = []
    if gained:
        text.append("gained: " + ", ".join(f"{f} {d * 100:+.1f} pp" for d, f in gained))
    if lost:
        text.append("lost: " + ", ".join(f"{f} {d * 100:+.1f} pp" for d, f in lost))
    return "; ".join(text)


def attribution_table(new: Mapping[str, float], old: Mapping[str, float] | None = None,
                      k: int = 10) -> list[str]:
    """Markdown rows: feature, mean |SHAP|, share, and the champion's share beside it."""
    shares = explanations.shares(dict(new))
    old_shares = explanations.shares(dict(old)) if old else {}
    lines = ["| feature | mean abs SHAP | share | champion share |", "|---|---|---|---|"]
    for f, v in explanations.top_features(dict(new), k):
        champ = f"{old_shares[f]:.1%}" if f in old_shares else ""
        lines.append(f"| {f} | {v:.4f} | {shares[f]:.1%} | {champ} |")
    return lines


def per_class_table(attributions: Mapping[str, Mapping[str, float]], k: int = 10) -> list[str]:
    """Markdown: mean |SHAP| per feature and class (multiclass), top features by the average."""
    classes = [c for c in attributions if c != explanations.ALL]
    if not classes:
        return attribution_table(attributions.get(explanations.ALL, {}), k=k)
    lines = ["| feature | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
    for f, _ in explanations.top_features(dict(attributions[explanations.ALL]), k):
        lines.append(f"| {f} | " + " | ".join(f"{attributions[c][f]:.4f}" for c in classes)
                     + " |")
    return lines


def threshold_line(threshold: float | None, rule: str | None) -> str:
    if threshold is None:
        return ""
    how = f"{rule}; " if rule else ""
    return f"decision threshold {threshold:.4g} ({how}labels are P(positive) >= it)"
