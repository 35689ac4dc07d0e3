"""Training progress: trials done, best so far, elapsed and an ETA per model and for the whole
run, in the log and as a Prefect progress artifact. A fake clock: no timed assertions."""

from __future__ import annotations

import pytest

from tasks.reports.progress import (
    PLAN,
    ProgressArtifact,
    RunPlan,
    TuningProgress,
    duration,
    tuning_progress,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "0 s"), (7.2, "8 s"), (59, "59 s"), (60, "1 min 00 s"), (185, "3 min 05 s"),
    (3720, "1 h 02 min")])
def test_durations_read_like_a_person_plans(seconds, shown):
    assert duration(seconds) == shown


def test_one_model_says_trials_best_elapsed_and_time_left():
    clock = Clock()
    tracker = TuningProgress(model="fraud", metric="logloss", total=20, clock=clock)
    clock.now += 10
    line = tracker.trial(2, 0.21, 0.2)
    assert line == ("fraud: trial 2/20 (10%), valid logloss 0.21000, best 0.20000; 10 s elapsed, "
                    "about 1 min 30 s left")
    clock.now += 5
    assert "pruned" in tracker.trial(3, None, 0.2)
    clock.now += 85
    assert tracker.trial(20, 0.19, 0.19).endswith("1 min 40 s elapsed, finishing")
    assert tracker.percent == 100.0


def test_the_whole_run_eta_counts_the_models_ahead_at_the_rate_so_far():
    clock = Clock()
    plan = RunPlan({"fraud": 10, "damage": 10, "settlement": 20}, clock=clock)
    first = TuningProgress(model="fraud", metric="logloss", total=10, plan=plan, clock=clock)
    clock.now += 20
    line = first.trial(5, 0.3, 0.3)  # 4 s a trial; 5 + 10 + 20 trials ahead
    assert line.startswith("fraud (1/3): trial 5/10")
    assert line.endswith("about 20 s left; whole run about 2 min 20 s left")
    clock.now += 20  # a slow trial: 6.7 s a trial now; 27 s for fraud + 30 trials ahead
    assert first.trial(6, 0.3, 0.3).endswith("about 27 s left; whole run about 3 min 47 s left")
    clock.now += 20
    first.trial(10, 0.3, 0.3)
    first.close()
    assert plan.finished["fraud"] == (10, 60.0)
    plan.finish("fraud", 99, 999.0)  # the CLI's own finish after the flow changes nothing
    assert plan.finished["fraud"] == (10, 60.0)
    plan.finish("damage")  # up to date: no tuning, no time
    third = TuningProgress(model="settlement", metric="rmse", total=20, plan=plan, clock=clock)
    clock.now += 12  # 6 s a trial here too: 18 left, nothing after it
    last = third.trial(2, 9.0, 9.0)
    assert last.endswith("about 1 min 48 s left") and "whole run" not in last


def test_the_whole_run_is_never_estimated_below_its_model():
    clock = Clock()
    plan = RunPlan({"a": 3, "b": 3}, clock=clock)
    plan.finish("a", 3, 3.0)  # 1 s a trial
    slow = TuningProgress(model="b", metric="rmse", total=3, plan=plan, clock=clock)
    clock.now += 3  # its first trial built the matrices: 3 s
    assert slow.trial(1, 9.0, 9.0).endswith("about 6 s left")  # nothing ahead of b


def test_one_model_alone_has_no_whole_run_line():
    clock = Clock()
    plan = RunPlan({"fraud": 4}, clock=clock)
    tracker = TuningProgress(model="fraud", metric="logloss", total=4, plan=plan, clock=clock)
    clock.now += 3
    assert "whole run" not in tracker.trial(1, 0.3, 0.3)


class Artifacts:
    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[tuple] = []
        self.fail_on = fail_on

    def create(self, progress, key=None, description=None):
        self.calls.append(("create", progress, key, description))
        return "artifact-1"

    def update(self, artifact_id, progress, description=None):
        if self.fail_on is not None and len(self.calls) >= self.fail_on:
            raise RuntimeError("HTTP 503")
        self.calls.append(("update", artifact_id, progress, description))


@pytest.fixture
def artifacts(monkeypatch):
    import prefect.artifacts

    fake = Artifacts()
    monkeypatch.setattr(prefect.artifacts, "create_progress_artifact", fake.create)
    monkeypatch.setattr(prefect.artifacts, "update_progress_artifact", fake.update)
    return fake


def test_the_hook_moves_a_progress_bar_and_returns_the_line(artifacts):
    token = PLAN.set(RunPlan({"fraud": 2, "damage": 2}))
    try:
        tracker, on_trial = tuning_progress("fraud", "logloss", 2, warn=pytest.fail)
    finally:
        PLAN.reset(token)
    line = on_trial(1, 0.25, 0.25)
    on_trial(2, 0.24, 0.24)
    tracker.close()
    assert line.startswith("fraud (1/2): trial 1/2 (50%)")
    assert artifacts.calls[0][:3] == ("create", 0.0, "training-progress-fraud")
    assert [c[2] for c in artifacts.calls[1:]] == [50.0, 100.0]
    assert artifacts.calls[1][3] == line  # the bar's description is the log line
    assert tracker.plan.finished["fraud"][0] == 2


def test_a_refused_update_never_fails_training_and_is_said_once(monkeypatch):
    import prefect.artifacts

    fake = Artifacts(fail_on=1)
    monkeypatch.setattr(prefect.artifacts, "create_progress_artifact", fake.create)
    monkeypatch.setattr(prefect.artifacts, "update_progress_artifact", fake.update)
    warned: list[str] = []
    bar = ProgressArtifact("training-progress-fraud", warned.append)
    for percent in (0.0, 10.0, 20.0):
        bar.update(percent, "x")
    assert len(warned) == 1 and "HTTP 503" in warned[0]


def test_the_tuning_loop_calls_the_hook_after_each_trial(claims, make_config):
    from tasks.core.tasktypes import task_type
    from tasks.training.train import feature_spec, split_rows, train_model
    from tasks.training.validate import validate_frame

    cfg = make_config("binary")
    report = validate_frame(claims, cfg)
    spec = feature_spec(claims, report, cfg)
    splits = split_rows(spec.encode_target(claims[cfg.target]), cfg.training,
                        task_type(cfg.task))
    seen: list[tuple] = []
    lines: list[str] = []

    def hook(done, value, best):
        seen.append((done, value, best))
        return f"hooked {done}"

    train_model(claims, spec, splits, cfg.training, "cpu", "hook", progress=lines.append,
                on_trial=hook)
    assert [d for d, _, _ in seen] == list(range(1, cfg.training.n_trials + 1))
    assert lines == [f"hooked {d}" for d in range(1, cfg.training.n_trials + 1)]
