"""The laptop recipe of docs/prefect.md, run line by line as written in a shell from the
checkout: `mlops server start` (servers, process pools, workers, the profile mlops-local), plain
`prefect` commands against it, `prefect deploy --all`, a deployment run on the laptop's worker
with its MLflow links and plot images (seen in Chromium), and `mlops server stop --purge`
switching the profile back. PREFECT_HOME and MLOPS_HOME are temporary: the developer's
~/.prefect is never touched. The tests of this module run in order on one recipe run."""

from __future__ import annotations

import json
import re
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from datetime import UTC, datetime

import pytest

from deployments.manifest import load_manifest
from tests.e2e.browser import browser_page, chromium_path, keep_screenshot
from tests.e2e.conftest import REPO, cli_env, free_port, paused_run
from tests.e2e.test_deployments import write_configs

pytestmark = pytest.mark.slow
DOC = REPO / "docs" / "prefect.md"


def recipe() -> list[str]:
    """The commands of the bash block after the laptop-recipe marker, comments dropped."""
    text = DOC.read_text()
    block = re.search(r"<!-- laptop-recipe[^>]*-->\s*```bash\n(.*?)```", text, re.S)
    assert block, f"no laptop-recipe block in {DOC}"
    lines = [line.split("  #")[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def shell(lines: list[str], env: dict, timeout_s: float) -> subprocess.CompletedProcess:
    """One bash session (so `source` carries over), stopping at the first failing line."""
    script = "set -e\n" + "\n".join(f"echo '>>> {line}'\n{line}" for line in lines)
    return subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout_s)


def section(out: str, command: str) -> str:
    """What one recipe line printed."""
    return out.split(f">>> {command}")[1].split(">>>")[0]


def api_post(api: str, path: str, body: dict) -> list:
    req = urllib.request.Request(f"{api}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """Every line but the last (the stop, which the last test runs); stopped here if it did not."""
    root = tmp_path_factory.mktemp("recipe")
    steps = recipe()
    env = cli_env(MLOPS_HOME=str(root / "home"), PREFECT_HOME=str(root / "prefect-home"),
                  MLOPS_CONFIG_DIR=str(write_configs(root / "configs")),
                  MLOPS_PREFECT_PORT=str(free_port()), MLOPS_MLFLOW_PORT=str(free_port()),
                  PREFECT_WORKER_QUERY_SECONDS="2", COLUMNS="200")  # rich tables uncut
    done = shell(steps[:-1], env, timeout_s=840)
    found = {"steps": steps, "env": env, "root": root, "out": done.stdout + done.stderr,
             "rc": done.returncode, "api": f"http://127.0.0.1:{env['MLOPS_PREFECT_PORT']}/api",
             "mlflow": f"http://127.0.0.1:{env['MLOPS_MLFLOW_PORT']}"}
    yield found
    if not found.get("stopped"):
        subprocess.run([str(REPO / ".venv" / "bin" / "mlops"), "server", "stop", "--purge"],
                       env=env, capture_output=True, timeout=120)


def training_run(ran) -> dict:
    today = datetime.now(UTC).date().isoformat()
    [run] = api_post(ran["api"], "/flow_runs/filter", {"flow_runs": {
        "name": {"any_": [f"train-fraud-{today}"]}}})
    return run


def test_the_recipe_deploys_and_runs_on_the_laptop_worker(ran):
    steps, out = ran["steps"], ran["out"]
    assert steps[0].endswith("mlops server start") and "deploy --all" in " ".join(steps)
    assert ran["rc"] == 0, out[-5000:]
    assert "mlops-local" in section(out, "prefect profile ls")
    pools = section(out, "prefect work-pool ls")
    assert "cpu-runners" in pools and "gpu-runners" in pools and "process" in pools, pools
    assert "Completed" in section(out, "prefect deployment run")
    assert "temporary" not in out.lower(), "a plain prefect command started its own server"
    profiles = tomllib.loads((ran["root"] / "prefect-home" / "profiles.toml").read_text())
    assert profiles["active"] == "mlops-local"
    assert profiles["profiles"]["mlops-local"]["PREFECT_API_URL"] == ran["api"]

    # the run the worker executed: named after what it does, with the stack's MLflow links
    training = training_run(ran)
    assert training["state_type"] == "COMPLETED"
    artifacts = api_post(ran["api"], "/artifacts/filter", {"artifacts": {
        "flow_run_id": {"any_": [training["id"]]}}})
    assert any(ran["mlflow"] in json.dumps(a.get("data")) for a in artifacts), \
        [a.get("key") for a in artifacts]
    assert not any("mlflow ui " in json.dumps(a.get("data")) for a in artifacts)
    paused_run(ran["api"], "fraud")  # its deploy run waits for approval, no process left


def test_the_worker_run_shows_its_plots_in_chromium(ran):
    chromium_path()
    assert ran["rc"] == 0, ran["out"][-3000:]
    training = training_run(ran)
    images = [a for a in api_post(ran["api"], "/artifacts/filter", {"artifacts": {
        "flow_run_id": {"any_": [training["id"]]}}}) if a["type"] == "image"]
    assert len(images) >= 3 and all(a["data"].startswith(ran["mlflow"]) for a in images), images
    ui = ran["api"].removesuffix("/api")
    with browser_page() as page:
        for artifact in images:
            page.goto(f"{ui}/artifacts/artifact/{artifact['id']}")
            image = page.locator(f"img[src='{artifact['data']}']").first
            image.wait_for()
            page.wait_for_function("img => img.complete", arg=image.element_handle())
            width = image.evaluate("img => img.naturalWidth")
            assert width > 100, f"{artifact['key']}: the image did not load ({width} px)"
            if artifact["key"].endswith("-roc"):
                keep_screenshot(page, "worker-run-plot")
        # the run's Artifacts tab lists them (the README's picture of a run's artifacts)
        page.goto(f"{ui}/runs/flow-run/{training['id']}")
        page.locator("#artifacts").click()
        page.get_by_text(images[0]["key"]).first.wait_for()
        keep_screenshot(page, "training-run-artifacts")


def error_logs(api: str, run_id: str, timeout_s: float = 30) -> list[str]:
    """The run's error logs once the server has them: a run's state is final before its
    process has shipped its last log batch, so an empty answer is asked again."""
    deadline = time.monotonic() + timeout_s
    while True:
        said = [entry["message"] for entry in api_post(api, "/logs/filter", {
            "logs": {"flow_run_id": {"any_": [run_id]}, "level": {"ge_": 40}}})]
        if said or time.monotonic() > deadline:
            return said
        time.sleep(1)


def final(api: str, run_id: str, timeout_s: float = 240) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{api}/flow_runs/{run_id}", timeout=10) as resp:
                run = json.loads(resp.read())
        except (TimeoutError, urllib.error.URLError):  # a server busy with the runs it serves
            time.sleep(1)
            continue
        if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return run
        time.sleep(1)
    raise TimeoutError(f"run {run_id} did not finish")


def test_worker_rejections_end_in_one_line(ran):
    """A gate's rejection and a person's, on the laptop's worker: a named or Failed state with
    the reason, and error logs without tracebacks or state reprs."""
    assert ran["rc"] == 0, ran["out"][-3000:]
    env = {**ran["env"], "PATH": f"{REPO / '.venv' / 'bin'}:{ran['env']['PATH']}"}
    gate = shell(["prefect deployment run 'training-pipeline/settlement' --params "
                  "'{\"deploy\": false}' --watch"], env, timeout_s=480)
    assert gate.returncode == 1 and "GateRejected" in gate.stdout, gate.stdout[-3000:]
    [rejected] = [r for r in api_post(ran["api"], "/flow_runs/filter", {"flow_runs": {
        "name": {"like_": "train-settlement-"}}})]
    assert rejected["state"]["name"] == "GateRejected"
    assert "misses the ceiling 1.0" in rejected["state"]["message"]
    said = error_logs(ran["api"], rejected["id"])
    assert said and not any("Traceback" in m or "GateDecision(" in m for m in said), said

    deploy_run = paused_run(ran["api"], "fraud")
    answer = shell(["mlops approve fraud --reject --as alice --comment 'not this one'"], env,
                   timeout_s=120)
    assert answer.returncode == 0, answer.stdout + answer.stderr
    run = final(ran["api"], deploy_run)
    assert run["state_type"] == "FAILED", run["state"]
    assert "rejected by alice" in run["state"]["message"]
    said = error_logs(ran["api"], deploy_run)
    assert said and not any("Traceback" in m for m in said), said


def test_a_drift_triggered_retrain_runs_to_completion_on_the_laptop(ran):
    """monitor flags a drifted batch → the deployed trigger → training-pipeline/fraud, run by
    the laptop's worker to Completed (nothing sits Late for want of a gitlab-ci worker)."""
    from tasks.adapters.registries import open_registry
    from tasks.core.settings import Settings
    from tasks.training.synthetic import generate_claims
    from tests.conftest import crown

    assert ran["rc"] == 0, ran["out"][-3000:]
    found = Settings.from_env(ran["env"])
    crown(open_registry(found), "fraud", "1", key=found.resolve_audit_key())
    drifted = ran["root"] / "drifted.parquet"
    generate_claims(3000, seed=77, drift=1.0).drop(
        columns=["is_fraud", "damage_severity", "settlement_amount"]).to_parquet(drifted)
    env = {**ran["env"], "PATH": f"{REPO / '.venv' / 'bin'}:{ran['env']['PATH']}"}
    before = {r["id"] for r in api_post(ran["api"], "/flow_runs/filter", {})}
    flagged = shell([f"mlops monitor fraud --input {drifted} || test $? -eq 4"], env,
                    timeout_s=240)
    assert flagged.returncode == 0 and "DRIFT" in flagged.stdout, flagged.stdout[-3000:]
    assert f"monitor-fraud-{datetime.now(UTC).date().isoformat()}" in json.dumps(
        api_post(ran["api"], "/flow_runs/filter", {"flow_runs": {"name": {"like_": "monitor-"}}}))
    deadline, started = time.monotonic() + 120, []
    while not started and time.monotonic() < deadline:
        started = [r for r in api_post(ran["api"], "/flow_runs/filter", {
            "flows": {"name": {"any_": ["training-pipeline"]}}}) if r["id"] not in before]
        time.sleep(1)
    assert len(started) == 1, "the drift event started no (or several) training runs"
    run = final(ran["api"], started[0]["id"], timeout_s=360)
    assert run["state_type"] == "COMPLETED", run["state"]
    assert (run.get("created_by") or {}).get("type") == "AUTOMATION"


def test_a_gpu_model_trains_on_cpu_with_a_warning_on_the_laptop(ran):
    """training-pipeline/damage is deployed to gpu-runners; on the laptop (no GPU) its run trains
    on CPU, says so in its log, and completes."""
    assert ran["rc"] == 0, ran["out"][-3000:]
    env = {**ran["env"], "PATH": f"{REPO / '.venv' / 'bin'}:{ran['env']['PATH']}"}
    done = shell(["prefect deployment run 'training-pipeline/damage' --params "
                  "'{\"deploy\": false}' --watch"], env, timeout_s=480)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    run_id = done.stdout.split("UUID:")[1].split()[0]  # this run, not another of damage's
    run = final(ran["api"], run_id, timeout_s=30)
    assert run["state_type"] == "COMPLETED" and run["name"].startswith("train-damage-"), run
    warned = [entry["message"] for entry in api_post(ran["api"], "/logs/filter", {
        "logs": {"flow_run_id": {"any_": [run["id"]]}, "level": {"ge_": 30}}})]
    assert any("damage: no CUDA device here, training on CPU" in m for m in warned), warned


def test_pools_apply_on_the_stack_keeps_the_laptop_env(ran):
    """`mlops pools apply` against the laptop's own server applies the same laptop pools (a
    GPU pool with MLOPS_DEVICE=cuda would fail every damage run on a laptop)."""
    env = {**ran["env"], "PATH": f"{REPO / '.venv' / 'bin'}:{ran['env']['PATH']}"}
    applied = shell(["mlops pools apply"], env, timeout_s=120)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    pools = [line for line in applied.stdout.splitlines() if line.startswith(("cpu-runners",
                                                                               "gpu-runners"))]
    assert len(pools) == 2 and all(line.endswith(": unchanged") for line in pools), applied.stdout


def test_stop_purges_and_switches_the_profile_back(ran):
    env = {**ran["env"], "PATH": f"{REPO / '.venv' / 'bin'}:{ran['env']['PATH']}"}
    stopped = shell(ran["steps"][-1:], env, timeout_s=120)
    ran["stopped"] = True
    assert ran["steps"][-1] == "mlops server stop --purge"
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    removed = re.search(r"removed (\d+) deployments and (\d+) automations", stopped.stdout)
    assert removed, stopped.stdout
    # every deployment prefect.yaml declares (the recipe deployed them all), and the automations
    assert int(removed[1]) == len(load_manifest(REPO / "prefect.yaml")), stopped.stdout
    assert int(removed[2]) >= 1, stopped.stdout
    assert "Prefect profile ephemeral is active again" in stopped.stdout
    profiles = tomllib.loads((ran["root"] / "prefect-home" / "profiles.toml").read_text())
    assert profiles["active"] == "ephemeral"
    assert "mlops-local" not in profiles.get("profiles", {})  # removed, not left inactive
