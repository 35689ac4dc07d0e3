"""The training flow end to end in-process: registration, lineage, idempotence, the gate."""

from __future__ import annotations

import mlflow
import pytest

from flows.training import training_pipeline
from tasks.core.errors import GateRejected
from tasks.core.lineage import file_sha256
from tasks.core.settings import Settings
from tests.conftest import config_yaml
from tests.integration.conftest import HomeSnapshot, point_at, versions

BINARY = "m-binary"


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    """Binary model `m-binary` trained once per module (v1 registered as challenger) and the
    flow's result; each test using it starts from a copy restored in place (HomeSnapshot)."""
    snapshot = HomeSnapshot(tmp_path_factory.mktemp("pipeline") / "home")
    with pytest.MonkeyPatch.context() as mp:
        point_at(snapshot.base, mp)
        (snapshot.base / "configs" / f"{BINARY}.yaml").write_text(config_yaml(name=BINARY))
        result = training_pipeline(BINARY)
        snapshot.take()
    return snapshot, result


@pytest.fixture
def trained_binary(binary, home, monkeypatch):
    """The module's `m-binary` store as its first training left it, in this test's environment:
    the model's name and that training's result."""
    snapshot, result = binary
    snapshot.restore()
    point_at(snapshot.base, monkeypatch)
    return BINARY, result


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_pipeline_registers_a_loadable_challenger(request, write_config, registry, task):
    if task == "binary":  # the module's training, shared with the re-run tests below
        name, result = request.getfixturevalue("trained_binary")
    else:
        name = write_config(f"m-{task}", task)
        result = training_pipeline(name)
    assert result.version == "1" and not result.reused and result.gate == "passed"

    reg = registry()
    mv = reg.client.get_model_version_by_alias(name, "challenger")
    assert str(mv.version) == "1"
    for tag in ("git_commit", "data_fingerprint", "config_hash", "code_hash", "run_key",
                "prefect_flow_run_id", "artifact_sha256", "classification", "department"):
        assert mv.tags.get(tag), f"missing tag {tag}"
    model = mlflow.pyfunc.load_model(f"models:/{name}@challenger")
    assert len(model.predict(model.input_example)) == len(model.input_example)

    local = mlflow.artifacts.download_artifacts(f"models:/{name}/1")
    booster = next(p for p in __import__("pathlib").Path(local).rglob("*.ubj"))
    assert file_sha256(booster) == mv.tags["artifact_sha256"]
    run = reg.client.get_run(mv.run_id)
    assert run.info.status == "FINISHED"
    assert f"test_{result.metric}" in run.data.metrics
    assert {a.path for a in reg.client.list_artifacts(mv.run_id)} >= {
        "model", "plots", "gate", "validation", "training", "explanations"}
    assert "plots/shap.png" in {a.path for a in reg.client.list_artifacts(mv.run_id, "plots")}
    assert any(k.startswith("shap.") for k in run.data.metrics)
    card = mlflow.artifacts.load_text(f"models:/{name}/1/model_card.md")
    assert "## Explanations (tree SHAP: mean |SHAP| on the test set" in card
    if task == "binary":  # no threshold configured: the default, recorded with the version
        assert mv.tags["decision_threshold"] == "0.5" and "decision threshold 0.5" in card
    else:
        assert "decision_threshold" not in mv.tags


def test_rerun_with_unchanged_inputs_reuses_the_version(trained_binary, registry, monkeypatch):
    name, first = trained_binary
    runs_before = len(registry().client.search_runs(
        [registry().client.get_experiment_by_name(name).experiment_id]))

    def no_training(*args, **kwargs):
        raise AssertionError("training must not run again")

    monkeypatch.setattr("tasks.training.train.train_model", no_training)
    second = training_pipeline(name)
    assert second.reused and second.version == first.version
    assert second.value == pytest.approx(first.value)
    reg = registry()
    assert len(versions(reg, name)) == 1
    assert len(reg.client.search_runs(
        [reg.client.get_experiment_by_name(name).experiment_id])) == runs_before


def test_config_change_trains_a_new_version(trained_binary, write_config):
    name, first = trained_binary
    assert first.version == "1"
    write_config(name, n_trials=3)
    assert training_pipeline(name).version == "2"


def test_gate_rejection_registers_nothing_and_reuses_training(write_config, registry,
                                                              monkeypatch):
    name = write_config("strict", gate=", max_regression: 0.0", extra="")
    path = Settings.from_env().config_dir / f"{name}.yaml"
    path.write_text(path.read_text().replace("threshold: 0.6", "threshold: 0.999"))
    with pytest.raises(GateRejected, match="misses the floor 0.999"):
        training_pipeline(name)
    reg = registry()
    assert versions(reg, name) == []
    run = reg.client.search_runs([reg.client.get_experiment_by_name(name).experiment_id])[0]
    assert run.info.status == "FAILED" and run.data.metrics["gate_passed"] == 0.0

    monkeypatch.setattr("tasks.training.train.train_model",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("not cached")))
    with pytest.raises(GateRejected):
        training_pipeline(name)  # train comes back from the Prefect cache


def test_gate_rejection_is_a_named_failed_state_without_traceback(write_config):
    """The run ends Failed("GateRejected") with the reasons as its message, the gate task returns
    its decision (no task fails), and no log record carries a traceback (MLOPS_DEBUG unset)."""
    import logging

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from tasks.core.redact import RedactFilter

    name = write_config("named", gate=", max_regression: 0.0", extra="")
    path = Settings.from_env().config_dir / f"{name}.yaml"
    path.write_text(path.read_text().replace("threshold: 0.6", "threshold: 0.999"))
    records: list[logging.LogRecord] = []
    handler = logging.Handler()  # filtered as every handler of ours is (mlops/logging.yml)
    handler.addFilter(RedactFilter())
    handler.emit = records.append
    logging.getLogger("prefect").addHandler(handler)
    try:
        state = training_pipeline(name, return_state=True)
    finally:
        logging.getLogger("prefect").removeHandler(handler)
    assert state.is_failed() and state.name == "GateRejected"
    assert "misses the floor 0.999" in state.message and "Traceback" not in state.message
    assert isinstance(state.result(raise_on_failure=False), GateRejected)
    assert not [(r.msg, r.exc_text) for r in records if r.exc_info or r.exc_text]

    async def task_states():
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
        return {r.name.rsplit("-", 1)[0]: r.state for r in runs}

    import asyncio

    states = asyncio.run(task_states())
    failed = {n for n, s in states.items() if s.is_failed()}
    assert failed == set(), states  # the gate returned its decision; the flow ended the run
    assert states["gate"].is_completed()


@pytest.mark.parametrize("alias", ["champion", "live"])
def test_candidate_worse_than_champion_is_rejected(write_config, registry, home, alias):
    """The gate re-scores the version behind deploy.production.alias; with another alias it
    used to look for `champion`, find nothing and judge on the floor alone."""
    extra = "" if alias == "champion" else f"deploy: {{production: {{alias: {alias}}}}}\n"
    name = write_config(f"champ-{alias}", rows=3000, extra=extra)
    training_pipeline(name)
    reg = registry()
    reg.move_alias(name, alias, "1")
    path = home / "configs" / f"{name}.yaml"
    weak = path.read_text().replace(
        "exclude: [claim_id,",
        "exclude: [claim_id, days_to_report, police_report, claim_amount, policy_tenure_months,")
    path.write_text(weak)
    with pytest.raises(GateRejected, match="vs champion v1"):
        training_pipeline(name)
    assert len(versions(reg, name)) == 1
    assert str(reg.client.get_model_version_by_alias(name, alias).version) == "1"
