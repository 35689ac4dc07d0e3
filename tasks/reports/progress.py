"""Training progress as a person reads it: trials done, the best score so far, time elapsed and
an estimate of the time left, for the model and for the whole run (every model one command
trains in turn), in the run's log and in a Prefect progress artifact."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from uuid import UUID

from tasks.core.synced import synced

Clock = Callable[[], float]


def duration(seconds: float) -> str:
    """`8 s`, `3 min 05 s`, `1 h 02 min`: how long, to the precision a person plans with."""
    seconds = max(0, math.ceil(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@dataclass
class RunPlan:
    """The models one command trains in turn and their trial budgets. The rate of the trials
    run so far (seconds per trial) times the trials still ahead is the whole run's ETA; a model
    that needed no tuning (up to date, cached, failed early) leaves the budget with no time."""

    trials: dict[str, int]
    clock: Clock = time.monotonic
    finished: dict[str, tuple[int, float]] = field(default_factory=dict)

    def finish(self, model: str, trials_run: int = 0, seconds: float = 0.0) -> None:
        self.finished.setdefault(model, (trials_run, seconds))

    def position(self, model: str) -> str:
        names = list(self.trials)
        return f"{names.index(model) + 1}/{len(names)}" if model in names else ""

    def eta_s(self, model: str, done: int, elapsed: float, model_left: float) -> float | None:
        """The current model's own estimate plus the models ahead at the rate of every trial
        run so far (so the run's estimate is never below the model's)."""
        ran = sum(n for n, _ in self.finished.values()) + done
        spent = sum(s for _, s in self.finished.values()) + elapsed
        if ran == 0:
            return None
        return model_left + spent / ran * self.ahead(model)

    def ahead(self, model: str) -> int:
        """The trials of the models still to come after this one."""
        return sum(n for name, n in self.trials.items()
                   if name != model and name not in self.finished)


# set by the CLI for the models it trains in this process; a worker's run has none
PLAN: ContextVar[RunPlan | None] = ContextVar("mlops_run_plan", default=None)


@dataclass
class TuningProgress:
    """One model's tuning: `trial()` after each finished trial gives the line to log and the
    share done; `close()` hands the time spent to the run plan."""

    model: str
    metric: str
    total: int
    plan: RunPlan | None = None
    clock: Clock = time.monotonic
    started: float = 0.0
    done: int = 0

    def __post_init__(self) -> None:
        self.started = self.started or self.clock()

    @property
    def percent(self) -> float:
        return 100.0 * min(self.done, self.total) / self.total if self.total else 100.0

    def trial(self, done: int, value: float | None, best: float | None) -> str:
        self.done = done
        elapsed = self.clock() - self.started
        left = elapsed / done * max(self.total - done, 0) if done else None
        where = f" ({self.plan.position(self.model)})" if self.plan and self.plan.position(
            self.model) else ""
        shown = "pruned" if value is None else f"valid {self.metric} {value:.5f}"
        best_text = "none yet" if best is None or math.isnan(best) else f"{best:.5f}"
        line = (f"{self.model}{where}: trial {done}/{self.total} ({self.percent:.0f}%), {shown}, "
                f"best {best_text}; {duration(elapsed)} elapsed, ")
        line += "finishing" if left == 0 else (f"about {duration(left)} left"
                                              if left is not None else "estimating")
        run_left = self.plan.eta_s(self.model, done, elapsed, left) if (
            self.plan and left is not None) else None
        if run_left and self.plan and self.plan.ahead(self.model):  # else the model's estimate is the run's
            line += f"; whole run about {duration(run_left)} left"
        return line

    def close(self) -> None:
        if self.plan is not None:
            self.plan.finish(self.model, self.done, self.clock() - self.started)


class ProgressArtifact:
    """The model's tuning as a Prefect progress artifact (a bar in the run's Artifacts tab),
    created on the first update. Progress never fails a training: a refused update is logged
    once and the artifact is left as it was."""

    def __init__(self, key: str, warn: Callable[[str], None]):
        self.key, self.warn = key, warn
        self.artifact: UUID | None = None
        self.broken = False

    def update(self, percent: float, description: str) -> None:
        if self.broken:
            return
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        try:
            if self.artifact is None:
                self.artifact = synced(create_progress_artifact(percent, key=self.key,
                                                                description=description))
            else:
                update_progress_artifact(self.artifact, percent, description=description)
        except Exception as exc:  # noqa: BLE001 (the bar is a nicety; training goes on)
            self.broken = True
            self.warn(f"training progress artifact not updated: {type(exc).__name__}: {exc}")


def tuning_progress(model: str, metric: str, total: int,
                    warn: Callable[[str], None]) -> tuple[TuningProgress, Callable[..., str]]:
    """A model's progress in this run (with the CLI's plan when there is one), and the hook the
    tuning loop calls after each trial: it moves the artifact's bar and returns the line to log."""
    from tasks.core.steps import artifact_key

    tracker = TuningProgress(model=model, metric=metric, total=total, plan=PLAN.get())
    bar = ProgressArtifact(artifact_key("training-progress", model), warn)
    bar.update(0.0, f"{model}: tuning {total} trials")

    def on_trial(done: int, value: float | None, best: float | None) -> str:
        line = tracker.trial(done, value, best)
        bar.update(tracker.percent, line)
        return line

    return tracker, on_trial
