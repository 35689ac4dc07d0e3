"""Issue 22 items 2 and 3: deployment concurrency in prefect.yaml, the `gpu` limit, heartbeats
in every job, the zombie-run automation's shape and which crashes the re-run automation takes."""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from deployments.automations import (
    ALIVE_OR_DONE,
    HEARTBEAT_EVENT,
    rerun_automation,
    zombie_automation,
)
from deployments.manifest import check_manifest, load_manifest
from deployments.pools import (
    HEARTBEAT_ENV,
    POOL_TYPES,
    LimitsSpec,
    base_job_template,
    gpu_slots,
    load_limits,
    load_pools,
)
from tasks.core.errors import ConfigError
from tasks.core.gpu import GPU_LIMIT, gpu_slot

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "models"
MODELS = ("fraud", "damage", "settlement")


def _entries() -> dict[str, object]:
    return {d.full_name: d for d in load_manifest(REPO / "prefect.yaml")}


def test_deploy_runs_of_a_model_queue_one_at_a_time():
    entries = _entries()
    for model in MODELS:
        assert entries[f"deploy/deploy-{model}"].concurrency == (1, "ENQUEUE")


def test_drift_retraining_is_its_own_deployment_limited_to_one_cancelling_the_rest():
    entries = _entries()
    for model in MODELS:
        retrain = entries[f"training-pipeline/retrain-{model}"]
        assert retrain.concurrency == (1, "CANCEL_NEW")
        assert [t["expect"] for t in retrain.triggers] == [["mlops.model.drift-detected"]]
        assert retrain.triggers[0]["match"] == {"prefect.resource.id": f"mlops.model.{model}"}
        # weekly and CI runs are not cancelled by a drift retrain (no limit, no drift trigger)
        training = entries[f"training-pipeline/{model}"]
        assert training.concurrency == (None, None) and not training.triggers
        assert retrain.work_pool == training.work_pool


def _edit(tmp_path: Path, old: str, new: str) -> Path:
    manifest = tmp_path / "prefect.yaml"
    text = (REPO / "prefect.yaml").read_text()
    assert old in text
    manifest.write_text(text.replace(old, new, 1))
    return manifest


def test_check_deployments_flags_a_deploy_limit_that_would_race_or_drop_promotions(tmp_path):
    raced = _edit(tmp_path, "concurrency_limit: {limit: 1, collision_strategy: ENQUEUE}",
                  "concurrency_limit: {limit: 1, collision_strategy: CANCEL_NEW}")
    problems = check_manifest(raced, CONFIGS)
    assert len(problems) == 3 and all("needs concurrency_limit: {limit: 1, collision_strategy: "
                                      "ENQUEUE}" in p for p in problems), problems


def test_check_deployments_flags_a_retrain_without_its_limit(tmp_path):
    storm = _edit(tmp_path, "    concurrency_limit: {limit: 1, collision_strategy: CANCEL_NEW}\n",
                  "")
    problems = check_manifest(storm, CONFIGS)
    assert len(problems) == 3 and all("retrain-" in p and "CANCEL_NEW" in p for p in problems)


def test_check_deployments_wants_a_retrain_deployment_per_model(tmp_path):
    text = (REPO / "prefect.yaml").read_text()
    manifest = tmp_path / "prefect.yaml"
    manifest.write_text(text.replace("name: retrain-damage", "name: retrain-damage-x"))
    problems = check_manifest(manifest, CONFIGS)
    assert any("no training-pipeline/retrain-damage deployment" in p for p in problems), problems
    assert check_manifest(REPO / "prefect.yaml", CONFIGS) == []


def test_gpu_limit_is_the_number_of_gpu_runners():
    pools = load_pools()
    assert gpu_slots(pools) == sum(p.runners for p in pools.values() if p.device == "cuda") >= 1
    more = {**pools, "gpu-2": pools["gpu-runners"].model_copy(update={"runners": 3})}
    assert gpu_slots(more) == gpu_slots(pools) + 3
    cpu_only = {k: v for k, v in pools.items() if v.device == "cpu"}
    assert gpu_slots(cpu_only) == 0


@pytest.mark.parametrize("kind", POOL_TYPES)
def test_every_job_template_sends_heartbeats(kind):
    limits = load_limits()
    for pool in load_pools().values():
        for laptop in (False, True):
            env = base_job_template(pool, kind, laptop)["variables"]["properties"]["env"]
            assert env["default"][HEARTBEAT_ENV] == str(limits.heartbeat_seconds)


def test_the_checked_in_templates_carry_the_heartbeat():
    for path in (REPO / "deployments" / "pools").glob("*.json"):
        assert f'"{HEARTBEAT_ENV}": "{load_limits().heartbeat_seconds}"' in path.read_text(), path


def test_gitlab_flow_run_jobs_send_heartbeats_at_the_configured_rate():
    ci = yaml.safe_load((REPO / ".gitlab-ci.yml").read_text())
    for job in ("flow-run", "deploy-run"):
        assert ci[job]["variables"][HEARTBEAT_ENV] == str(load_limits().heartbeat_seconds), job


def test_pools_yaml_limits_block_is_not_a_pool():
    assert "limits" not in load_pools()
    assert load_limits().zombie_after_seconds > load_limits().heartbeat_seconds


@pytest.mark.parametrize("body, says", [
    ("heartbeat_seconds: 10", "greater than or equal to 30"),
    ("heartbeat_seconds: 60\n  zombie_after_seconds: 60", "must be longer than"),
    ("zombie_after: 90", "Extra inputs"),
    ("crashed_reruns: 5", "less than or equal to 3"),
])
def test_bad_limits_are_one_clear_line(tmp_path, body, says):
    pools = tmp_path / "pools.yaml"
    shutil.copy(REPO / "deployments" / "pools.yaml", pools)
    text = re.sub(r"limits:\n(  .*\n)+", f"limits:\n  {body}\n", pools.read_text())
    pools.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_limits(pools)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_zombie_automation_is_prefects_proactive_recipe():
    from prefect.client.schemas.objects import StateType
    from prefect.events.schemas.automations import Posture

    limits = LimitsSpec(heartbeat_seconds=30, zombie_after_seconds=75)
    automation = zombie_automation(limits)
    trigger = automation.trigger
    assert trigger.posture == Posture.Proactive
    assert trigger.match.model_dump() == {"prefect.resource.id": "prefect.flow-run.*"}
    assert trigger.after == {HEARTBEAT_EVENT} and trigger.for_each == {"prefect.resource.id"}
    assert trigger.expect == set(ALIVE_OR_DONE) and trigger.threshold == 1
    for end in ("Completed", "Failed", "Cancelled", "Crashed", "Suspended"):
        assert f"prefect.flow-run.{end}" in trigger.expect
    assert trigger.within == timedelta(seconds=75)
    [action] = automation.actions
    assert action.type == "change-flow-run-state" and action.state == StateType.CRASHED


class _Recorder:
    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple] = []
        self.fail = fail
        self.held = False

    def __call__(self, *args, **kw):
        self.calls.append((args, kw))
        if self.fail:
            raise self.fail
        recorder = self

        class _Slot:
            def __enter__(self):
                recorder.held = True

            def __exit__(self, *exc):
                recorder.held = False
                return False

        return _Slot()


def test_cpu_training_never_touches_the_gpu_limit():
    acquire = _Recorder()
    with gpu_slot("cpu", acquire=acquire):
        pass
    assert acquire.calls == []


def test_cuda_training_holds_one_gpu_slot_while_it_runs_and_frees_it_on_error():
    acquire = _Recorder()
    with pytest.raises(RuntimeError), gpu_slot("cuda", strict=True, acquire=acquire):
        assert acquire.held
        raise RuntimeError("boom")
    assert not acquire.held
    [(args, kw)] = acquire.calls
    assert args == (GPU_LIMIT,) and kw["occupy"] == 1 and kw["strict"] is True


def test_a_missing_gpu_limit_in_strict_mode_is_one_line_naming_the_fix():
    from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError

    acquire = _Recorder(ConcurrencySlotAcquisitionError("Concurrency limits ['gpu'] must be "
                                                        "created before acquiring slots"))
    with pytest.raises(ConfigError, match="mlops pools apply"), gpu_slot("cuda", strict=True,
                                                                          acquire=acquire):
        pytest.fail("the body must not run without a slot")


def test_outside_a_deployment_run_the_limit_is_not_strict():
    acquire = _Recorder()
    with gpu_slot("cuda", acquire=acquire):
        pass
    assert acquire.calls[0][1]["strict"] is False


def _state_event(state_type: str, run_count: int, deployment: bool = True,
                 flow: str = "training-pipeline") -> object:
    """A flow-run state-change event shaped as the server emits it (server/models/events.py)."""
    from uuid import uuid4

    from prefect.server.events.schemas.events import ReceivedEvent
    from prefect.types._datetime import now

    name = state_type.capitalize()
    related = [{"prefect.resource.id": f"prefect.flow.{uuid4()}", "prefect.resource.role": "flow",
                "prefect.resource.name": flow}]
    if deployment:
        related.append({"prefect.resource.id": f"prefect.deployment.{uuid4()}",
                        "prefect.resource.role": "deployment"})
    return ReceivedEvent(occurred=now("UTC"), event=f"prefect.flow-run.{name}", id=uuid4(),
                         resource={"prefect.resource.id": f"prefect.flow-run.{uuid4()}",
                                   "prefect.run-count": str(run_count),
                                   "prefect.state-name": name, "prefect.state-type": state_type},
                         related=related)


def _server_trigger(automation):
    from prefect.server.events.schemas.automations import AutomationCore

    return AutomationCore.model_validate(automation.model_dump(mode="json")).trigger


@pytest.mark.parametrize("reruns, run_count, deployment, flow, taken", [
    (1, 1, True, "training-pipeline", True),   # crashed on its first run: scheduled again
    (1, 2, True, "training-pipeline", False),  # the re-run crashed too: left Crashed, no storm
    (1, 0, True, "training-pipeline", False),  # never ran (no runner took it): nor would a re-run
    (1, 1, False, "training-pipeline", False),  # no deployment: Prefect cannot reschedule it
    (1, 1, True, "hpo-worker", False),         # the study retries a lost worker's trial
    (1, 1, True, "deploy", True),
    (2, 2, True, "training-pipeline", True),
    (2, 3, True, "training-pipeline", False),
])
def test_the_rerun_automation_follows_a_deployment_run_crashed_on_an_early_run(
        reruns, run_count, deployment, flow, taken):
    trigger = _server_trigger(rerun_automation(LimitsSpec(crashed_reruns=reruns)))
    assert trigger.covers(_state_event("CRASHED", run_count, deployment, flow)) == taken


def test_the_excluded_tuning_worker_flow_is_the_real_one():
    from deployments.automations import HPO_WORKER_FLOW
    from flows.hpo_worker import hpo_worker
    from tasks.training.hpo import WORKER_DEPLOYMENT

    assert hpo_worker.name == HPO_WORKER_FLOW == WORKER_DEPLOYMENT.split("/")[0]


def test_the_rerun_automation_waits_for_quiet_then_schedules_the_same_run_again():
    from prefect.client.schemas.objects import StateType
    from prefect.events.schemas.automations import Posture

    limits = LimitsSpec(crashed_reruns=1, rerun_after_seconds=25)
    automation = rerun_automation(limits)
    trigger = automation.trigger
    # after a Crashed, any other state change of that run within 25 s (a person's retry, a late
    # Completed of a run wrongly thought dead) means no re-run; silence means one
    assert trigger.posture == Posture.Proactive and trigger.for_each == {"prefect.resource.id"}
    assert trigger.after == {"prefect.flow-run.Crashed"}
    assert trigger.expect == {"prefect.flow-run.*"} and trigger.within == timedelta(seconds=25)
    server = _server_trigger(automation)
    assert server.covers(_state_event("COMPLETED", 1)) and server.covers(_state_event("SCHEDULED", 1))
    [action] = automation.actions
    # not run-deployment: the same flow run (its id, parameters, parent) goes round again
    assert action.type == "change-flow-run-state" and action.state == StateType.SCHEDULED
    assert action.name == "AwaitingRetry" and action.force is False
    assert automation.enabled and not rerun_automation(LimitsSpec(crashed_reruns=0)).enabled
