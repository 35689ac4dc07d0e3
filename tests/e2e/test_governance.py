"""Release governance as processes against a real MLflow server on PostgreSQL: two promotions at
once, a promotion killed between the alias move and its checks, a tracking server that is down.
The audit chain stays consistent in every case (`mlops audit verify`)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import mlflow
import pytest

from tests.conftest import config_yaml
from tests.e2e.conftest import BIN, cli_env, free_port, mlops

pytestmark = pytest.mark.slow
DEPLOY = """deploy:
  staging:
    smoke: {max_latency_ms: 2000}
  production:
    approvers: [alice, bob]
"""


@pytest.fixture(scope="module")
def staged(mlflow_server, tmp_path_factory):
    """Model `gov` with v1, v2 and v3 registered and staged on the MLflow server by one `mlops
    run` with no Prefect server of ours (a temporary one): v1 and v2 from YAML files (a YAML
    path trains and stages, never promotes), v3 by name, which stops after staging because
    nobody could answer its approval here."""
    root = tmp_path_factory.mktemp("governance")
    configs = root / "configs"
    configs.mkdir()
    env = cli_env(MLFLOW_TRACKING_URI=mlflow_server, MLOPS_HOME=str(root / "state"),
                  MLOPS_CONFIG_DIR=str(configs), MLOPS_DEVICE="cpu", USER="builder")
    for trials in (2, 3):
        (root / f"gov-{trials}.yaml").write_text(
            config_yaml(name="gov", n_trials=trials, extra=DEPLOY))
    (configs / "gov.yaml").write_text(config_yaml(name="gov", n_trials=4, extra=DEPLOY))
    run = mlops(["run", str(root / "gov-2.yaml"), str(root / "gov-3.yaml"), "gov"], env,
                timeout=900)  # three pipelines in turn
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    out = run.stdout
    for version in ("1", "2"):
        assert f"gov v{version} staged; trained from a YAML path, which never promotes" in out, \
            out[-3000:]
    assert "gov v3 staged; promote it with: mlops promote gov 3 --as NAME" in out, out[-3000:]
    client = mlflow.MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    assert champion(client) is None
    return env, client


def champion(client) -> str | None:
    try:
        return str(client.get_model_version_by_alias("gov", "champion").version)
    except mlflow.exceptions.MlflowException:
        return None


def records(client) -> list[dict]:
    audit = client.get_experiment_by_name("audit/gov")
    runs = client.search_runs([audit.experiment_id], max_results=1000)
    return sorted((r.data.params for r in runs), key=lambda p: int(p.get("seq", 0)))


def test_two_promotions_at_once_end_with_one_champion_and_a_whole_chain(staged):
    env, client = staged
    procs = [subprocess.Popen([str(BIN / "mlops"), "promote", "gov", v, "--as", who],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for v, who in (("1", "alice"), ("2", "bob"))]
    results = [p.communicate(timeout=300) for p in procs]
    # under the lock one after the other: v1 then v2 both promote; v2 first leaves v1 older
    # than the champion, so it is refused (a rollback's business), naming why
    codes = [p.returncode for p in procs]
    assert codes in ([0, 0], [2, 0]), results
    if codes[0]:
        assert "v1 is older than champion v2" in results[0][1], results
    moves = [r for r in records(client) if r["action"] in ("promotion-intent", "promoted")]
    assert [r["action"] for r in moves] == ["promotion-intent", "promoted"] * codes.count(0)
    assert moves[0]["to_version"] == moves[1]["to_version"]
    assert champion(client) == moves[-1]["to_version"] == "2"
    verify = mlops(["audit", "verify", "gov"], env)
    assert verify.returncode == 0, verify.stderr


def test_a_promotion_killed_between_alias_and_checks_is_finished_by_the_next_command(staged):
    env, client = staged
    target = "3"  # newer than the champion, so a promotion
    seen = len(records(client))
    proc = subprocess.Popen([str(BIN / "mlops"), "promote", "gov", target,
                             "--as", "alice"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        fresh = records(client)[seen:]
        if any(r["action"] == "promotion-intent" for r in fresh):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the promotion finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)  # the machine is gone mid-promotion
    proc.wait()
    verify = mlops(["audit", "verify", "gov"], env)
    assert verify.returncode == 1 and "was started but not finished" in verify.stderr
    # the next production command completes the interrupted promotion (or reverts it) first
    again = mlops(["promote", "gov", target, "--as", "bob"], env)
    # completed (the alias had moved: v3 is champion already) or abandoned, then promoted now
    assert again.returncode == 0 or "v3 is champion already" in again.stderr, again.stderr
    after = records(client)
    finished = [r for r in after[seen:] if "interrupted" in r.get("reason", "")]
    assert finished and finished[0]["action"] in ("promoted", "rolled-back",
                                                   "promotion-abandoned"), after[seen:]
    assert champion(client) == target
    verify = mlops(["audit", "verify", "gov"], env)
    assert verify.returncode == 0, verify.stderr


def test_a_tracking_server_that_is_down_moves_nothing_and_leaks_nothing(staged):
    env, client = staged
    before = champion(client)
    dead = f"http://svc:s3cret-token@127.0.0.1:{free_port()}"
    result = mlops(["promote", "gov", "1", "--as", "alice"],
                   {**env, "MLFLOW_TRACKING_URI": dead, "MLOPS_TRACKING_RETRIES": "1"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unreachable" in lines[0], result.stderr
    assert "s3cret-token" not in result.stderr + result.stdout
    assert champion(client) == before


def test_a_signed_prefix_in_a_fresh_trail_is_named_and_the_keyless_verify_is_unverifiable(
        staged):
    """API calls only, as an insider with store access: the trail renamed away and its first
    records copied into a fresh `audit/gov`. Verify names the cut against the anchor; without
    the key it says unverifiable, never intact."""
    env, client = staged
    unverifiable = mlops(["audit", "verify", "gov"], {**env, "MLOPS_AUDIT_KEY": ""})
    assert unverifiable.returncode == 1 and "UNVERIFIABLE" in unverifiable.stderr
    assert "intact," not in unverifiable.stdout
    old = client.get_experiment_by_name("audit/gov")
    kept = records(client)
    client.rename_experiment(old.experiment_id, "audit/gov-original")
    fresh = client.create_experiment("audit/gov")
    try:
        for record in kept[:3]:
            run_id = client.create_run(fresh).info.run_id
            for key, value in record.items():
                client.log_param(run_id, key, value)
        verify = mlops(["audit", "verify", "gov"], env)
        assert verify.returncode == 1, verify.stdout
        assert (f"truncated: the chain ends at record 3 but its anchor names record "
                f"{len(kept)}") in verify.stderr
        refused = mlops(["promote", "gov", "1", "--as", "alice"], env)
        assert refused.returncode == 1 and "truncated" in refused.stderr
    finally:
        client.rename_experiment(fresh, "audit/gov-copy")
        client.rename_experiment(old.experiment_id, "audit/gov")
    assert mlops(["audit", "verify", "gov"], env).returncode == 0
