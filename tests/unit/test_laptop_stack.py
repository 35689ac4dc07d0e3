"""The laptop's side of `mlops server`: the Prefect profile mlops-local (in a temporary
profiles file, never ~/.prefect), the laptop pools and the workers' environment, and the CPU
fallback warning of a GPU model (the processes themselves: tests/e2e/test_local_stack.py and
tests/e2e/test_prefect_recipe.py)."""

from __future__ import annotations

import pytest
from prefect.settings import PREFECT_PROFILES_PATH, temporary_settings
from prefect.settings.profiles import load_profiles

from deployments.pools import base_job_template, load_pools
from mlops import profile
from mlops.laptop import PROJECT, worker_env, workers
from tasks.core.settings import Settings
from tasks.training.planning import cpu_fallback


@pytest.fixture
def profiles(tmp_path, monkeypatch):
    path = tmp_path / "prefect" / "profiles.toml"
    path.parent.mkdir()
    path.write_text('active = "local"\n\n[profiles.local]\n'
                    'PREFECT_API_URL = "http://127.0.0.1:4200/api"\n')
    monkeypatch.setenv("PREFECT_PROFILES_PATH", str(path))  # what `mlops server status` reads
    with temporary_settings(updates={PREFECT_PROFILES_PATH: path}):
        yield path


def test_start_activates_mlops_local_and_stop_restores_the_previous_profile(profiles, tmp_path):
    stack = tmp_path / "stack"
    assert profile.activate("http://127.0.0.1:4391/api", stack) == "local"
    assert profile.active({"PREFECT_PROFILES_PATH": str(profiles)}) == (
        "mlops-local", "http://127.0.0.1:4391/api")
    assert 'active = "mlops-local"' in profiles.read_text()
    # a second start keeps what was active before the first
    assert profile.activate("http://127.0.0.1:4391/api", stack) == "mlops-local"
    assert profile.deactivate(stack) == "local"
    assert load_profiles().active_name == "local"
    assert "http://127.0.0.1:4200/api" in profiles.read_text()  # the user's profile is intact
    assert "mlops-local" not in load_profiles().names  # stopped: nothing left behind
    assert profile.active({"PREFECT_PROFILES_PATH": str(profiles)}) == (
        "local", "http://127.0.0.1:4200/api")


def test_the_active_profile_is_read_as_prefect_reads_it_without_importing_prefect(tmp_path):
    """`mlops server status` reads the profiles files itself (no Prefect import): the same
    answer as Prefect's load_profiles for a missing file, a user file, and a shipped profile."""
    path = tmp_path / "profiles.toml"
    cases = [None, 'active = "mine"\n[profiles.mine]\nPREFECT_API_URL = "http://h:1/api"\n',
             'active = "local"\n', 'active = "ephemeral"\n[profiles.x]\n']
    for text in cases:
        path.unlink(missing_ok=True)
        if text is not None:
            path.write_text(text)
        with temporary_settings(updates={PREFECT_PROFILES_PATH: path}):
            current = load_profiles().active_profile
            expected = (current.name, next((str(v) for k, v in current.settings.items()
                                            if k.name == "PREFECT_API_URL"), None))
        assert profile.active({"PREFECT_PROFILES_PATH": str(path)}) == expected, text


def test_stop_leaves_a_profile_the_user_chose_since(profiles, tmp_path):
    stack = tmp_path / "stack"
    profile.activate("http://127.0.0.1:4391/api", stack)
    chosen = load_profiles()
    chosen.set_active("ephemeral")
    from prefect.settings.profiles import save_profiles

    save_profiles(chosen)
    assert profile.deactivate(stack) is None
    assert load_profiles().active_name == "ephemeral"
    assert "mlops-local" not in load_profiles().names


def test_laptop_pools_are_process_pools_and_gpu_falls_back_to_auto():
    pools = load_pools()
    beats = {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}
    laptop = base_job_template(pools["gpu-runners"], "process", laptop=True)
    assert laptop["variables"]["properties"]["env"]["default"] == {"MLOPS_DEVICE": "auto", **beats}
    gitlab = base_job_template(pools["gpu-runners"], "gitlab-ci")
    assert gitlab["variables"]["properties"]["env"]["default"] == {"MLOPS_DEVICE": "cuda", **beats}
    cpu = base_job_template(pools["cpu-runners"], "process", laptop=True)
    assert cpu["variables"]["properties"]["env"]["default"] == {"MLOPS_DEVICE": "cpu", **beats}


def test_workers_get_what_a_run_needs(tmp_path):
    found = Settings.from_env({"MLOPS_HOME": str(tmp_path / "home"), "MLOPS_PREFECT_PORT": "4391",
                               "MLOPS_MLFLOW_PORT": "5391", "MLOPS_CONFIG_DIR": "configs/models"})
    env = worker_env(found, {"PATH": "/usr/bin", "PREFECT_API_URL": "http://elsewhere/api"})
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4391/api"
    assert env["MLOPS_MLFLOW_UI_URL"] == "http://127.0.0.1:5391"
    assert env["MLOPS_HOME"] == str(tmp_path / "home")
    assert env["MLOPS_CONFIG_DIR"].startswith("/")
    assert env["MLOPS_PROJECT_DIR"] == str(PROJECT) and (PROJECT / "flows").is_dir()
    kept = worker_env(found, {"MLOPS_MLFLOW_UI_URL": "https://mlflow.example.com",
                              "MLOPS_PROJECT_DIR": "/srv/checkout"})
    assert kept["MLOPS_MLFLOW_UI_URL"] == "https://mlflow.example.com"
    assert kept["MLOPS_PROJECT_DIR"] == "/srv/checkout"
    names = [w.name for w in workers(found, {})]
    assert names == ["worker-cpu-runners", "worker-gpu-runners"]
    assert all(w.health is None and "--type" in w.command for w in workers(found, {}))


def test_a_gpu_model_on_cpu_is_warned_about():
    assert "training on CPU" in cpu_fallback("damage", "gpu-runners", "auto", "cpu")
    assert cpu_fallback("damage", "gpu-runners", "auto", "cuda") is None
    assert cpu_fallback("damage", "gpu-runners", "cpu", "cpu") is None  # CPU asked for
    assert cpu_fallback("fraud", "cpu-runners", "auto", "cpu") is None


def test_status_json_lists_the_workers_and_the_profile(tmp_path, monkeypatch, profiles):
    import json

    from typer.testing import CliRunner

    from mlops.cli import app

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "state"))
    shown = CliRunner().invoke(app, ["server", "status", "--json"])
    assert shown.exit_code == 1  # nothing runs under this MLOPS_HOME
    found = json.loads(shown.stdout)
    assert [(w["name"], w["pool"], w["up"]) for w in found["workers"]] == [
        ("worker-cpu-runners", "cpu-runners", False), ("worker-gpu-runners", "gpu-runners", False)]
    assert found["profile"] == "local" and found["profile_api_url"] == "http://127.0.0.1:4200/api"
