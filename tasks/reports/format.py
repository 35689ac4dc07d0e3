"""How numbers look in every report: one precision, and the change against the champion marked
better or worse by the metric's direction."""

from __future__ import annotations

from tasks.core.tasktypes import METRICS

DIGITS = 4


def fmt(value: float | None) -> str:
    """Every metric in every report with the same precision."""
    return "" if value is None else f"{value:.{DIGITS}f}"


def fmt_any(value: object) -> str:
    """A metric that may arrive as text (an MLflow tag): numbers get the one precision, anything
    else is shown as it is."""
    if value is None or value == "":
        return ""
    try:
        return fmt(float(value))  # type: ignore[arg-type]  # anything float() takes; else below
    except (TypeError, ValueError):
        return str(value)


def delta(metric: str, new: float, old: float | None) -> str:
    """`+0.0123 ▲` when better by the metric's direction, `▼` when worse, `=` when equal."""
    if old is None:
        return ""
    diff = new - old
    better = diff > 0 if METRICS[metric].higher_is_better else diff < 0
    arrow = "▲" if better else ("▼" if diff else "=")
    return f"{diff:+.{DIGITS}f} {arrow}"
