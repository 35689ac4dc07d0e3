"""A real Prefect server on PostgreSQL: the pipeline waits for approval in the CLI's process and
is answered from another process or through the API the UI uses; bad answers are refused and
asked again; with identity gitlab only an approval signed with the approver's own GitLab token
counts, and never the author's."""

from __future__ import annotations

import json
import time
import urllib.request

import mlflow
import pytest

from tests.conftest import config_yaml
from tests.e2e.conftest import BIN, background, cli_env, local_client, mlops, paused_run
from tests.fakes.gitlab_api import FakeGitLab

pytestmark = pytest.mark.slow
DEPLOY = """deploy:
  staging:
    smoke: {max_latency_ms: 2000}
  production:
    approvers: [alice, dave]
"""


def setup_env(tmp_path, api: str, name: str, extra: str = DEPLOY, **env) -> dict:
    configs = tmp_path / "configs"
    configs.mkdir(exist_ok=True)
    (configs / f"{name}.yaml").write_text(config_yaml(name=name, extra=extra))
    return cli_env(PREFECT_API_URL=api, MLOPS_HOME=str(tmp_path / "state"),
                   MLOPS_CONFIG_DIR=str(configs), MLOPS_DEVICE="cpu", **env)


def champion(tmp_path, name: str) -> str | None:
    """The champion's version; None when there is none. A read that fails otherwise (SQLite busy
    while the run writes, on a loaded machine) is asked again rather than taken for "none"."""
    client = local_client(tmp_path / "state")
    for attempt in range(20):
        try:
            return str(client.get_model_version_by_alias(name, "champion").version)
        except mlflow.exceptions.MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            if attempt == 19:
                raise
            time.sleep(0.5)
    return None


def api(url: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}{path}", data=data,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def resume(url: str, run_id: str, answer: dict) -> str:
    """What the UI's form does on Submit: POST /flow_runs/<id>/resume with the answer."""
    return api(url, f"/flow_runs/{run_id}/resume", {"run_input": answer})["status"]


def waits_again(url: str, run_id: str, timeout_s: float = 60, pauses: int = 2) -> dict:
    """The run paused again after a refused answer (a new question, not the old one)."""
    deadline = time.monotonic() + timeout_s
    keys = 0
    while time.monotonic() < deadline:
        run = api(url, f"/flow_runs/{run_id}")
        keys = len(run["empirical_policy"].get("pause_keys") or [])
        if run["state"]["type"] == "PAUSED" and keys >= pauses:
            return run
        time.sleep(0.5)
    raise AssertionError(f"the run did not ask again (pause keys {keys})")


def test_a_waiting_run_is_findable_refuses_bad_answers_and_is_approved_by_name(
        prefect_server, tmp_path):
    env = setup_env(tmp_path, prefect_server, "appr")
    with background([str(BIN / "mlops"), "run", "appr"], tmp_path / "run.log", env=env) as run:
        run_id = paused_run(prefect_server, "appr")
        waiting = api(prefect_server, f"/flow_runs/{run_id}")
        assert waiting["name"] == "deploy-appr-v1" and "awaiting-approval" in waiting["tags"]
        assert champion(tmp_path, "appr") is None
        # the untouched form, a rejection without a reason: the server refuses them (an answer
        # carries a comment, empty when approving, as the UI and `mlops approve` send)
        assert resume(prefect_server, run_id, {}) == "REJECT"
        assert resume(prefect_server, run_id, {"decision": "reject", "approver": "alice"}) \
            == "REJECT"
        # a blank-only name passes the form (no regex message) and is refused in words
        assert resume(prefect_server, run_id, {"decision": "approve", "approver": "  ",
                                                 "comment": ""}) \
            == "ACCEPT"
        waits_again(prefect_server, run_id)
        assert champion(tmp_path, "appr") is None
        # a well-formed answer by someone who may not approve: refused, recorded, asked again
        assert resume(prefect_server, run_id, {"decision": "approve", "approver": "mallory",
                                                 "comment": ""}) \
            == "ACCEPT"
        waits_again(prefect_server, run_id, pauses=3)
        assert champion(tmp_path, "appr") is None
        refused = mlops(["approve", "appr", "--as", "mallory"], env)
        assert refused.returncode == 2 and "mallory may not approve" in refused.stderr

        started = time.perf_counter()
        answer = mlops(["approve", "appr", "--as", "alice", "--comment", "looks good"], env)
        assert answer.returncode == 0, answer.stderr
        while champion(tmp_path, "appr") is None and run.poll() is None:
            time.sleep(0.2)
        promoted_after = time.perf_counter() - started
        assert run.wait(timeout=120) == 0, (tmp_path / "run.log").read_text()[-3000:]
    print(f"\napproval -> champion alias moved: {promoted_after:.2f}s "
          f"(mlops approve process included)")
    assert champion(tmp_path, "appr") == "1"
    done = api(prefect_server, f"/flow_runs/{run_id}")
    assert "awaiting-approval" not in done["tags"]
    log = (tmp_path / "run.log").read_text()
    assert "enter your name as the approver: a blank one is not an answer" in log
    assert "appr@champion: v- → v1, approved by alice (declared, unverified)" in log
    history = mlops(["history", "appr"], env)
    assert history.returncode == 0
    assert "approval-refused" in history.stdout and "mallory" in history.stdout
    assert "promoted" in history.stdout and "looks good" in history.stdout
    assert mlops(["audit", "verify", "appr"], env).returncode == 0
    events = api(prefect_server, "/events/filter", {"filter": {
        "event": {"prefix": ["mlops.approval."]},
        "resource": {"id": ["mlops.model.appr"]}}})["events"]
    assert {e["event"] for e in events} >= {"mlops.approval.requested",
                                            "mlops.approval.answered"}


def test_a_rejection_needs_a_reason_and_ends_the_run(prefect_server, tmp_path):
    env = setup_env(tmp_path, prefect_server, "rej")
    with background([str(BIN / "mlops"), "run", "rej"], tmp_path / "run.log", env=env) as run:
        paused_run(prefect_server, "rej")
        bare = mlops(["approve", "rej", "--as", "alice", "--reject"], env)
        assert bare.returncode == 2 and "a comment is required" in bare.stderr
        answer = mlops(["approve", "rej", "--as", "alice", "--reject", "--comment", "not yet"],
                       env)
        assert answer.returncode == 0, answer.stderr
        assert run.wait(timeout=120) == 1
    log = (tmp_path / "run.log").read_text()
    assert "rejected by alice (declared, unverified): not yet" in log
    assert champion(tmp_path, "rej") is None
    history = mlops(["history", "rej"], env)
    assert "approval-rejected" in history.stdout and "not yet" in history.stdout


def test_identity_gitlab_counts_only_a_signed_approval_by_someone_else(prefect_server,
                                                                       tmp_path):
    users = {"glpat-alice": {"id": 11, "username": "alice", "name": "Alice Approver"},
             "glpat-dave": {"id": 12, "username": "dave", "name": "Dave Builder"}}
    fake = FakeGitLab(tokens={"glpat-pipeline": ["api"], "glpat-alice": ["api"],
                              "glpat-dave": ["api"]}, users=users).start()
    extra = DEPLOY.replace("approvers:", "identity: gitlab\n    approvers:")
    gitlab = {"CI_SERVER_URL": fake.url, "CI_PROJECT_ID": "42", "CI_COMMIT_SHA": "d" * 40,
              "CI_COMMIT_REF_NAME": "main", "GITLAB_USER_LOGIN": "dave",
              "CI_COMMIT_AUTHOR": "Dave Builder <dave@example.com>"}
    env = setup_env(tmp_path, prefect_server, "idg", extra=extra, **gitlab,
                    MLOPS_GITLAB_TOKEN="glpat-pipeline")
    approver = {k: v for k, v in env.items() if k != "MLOPS_GITLAB_TOKEN"}
    try:
        with background([str(BIN / "mlops"), "run", "idg"], tmp_path / "run.log",
                        env=env) as run:
            run_id = paused_run(prefect_server, "idg")
            # typed in the form: well-formed, but nobody proved to be alice
            assert resume(prefect_server, run_id, {"decision": "approve", "approver": "alice",
                                                     "comment": ""}) \
                == "ACCEPT"
            waits_again(prefect_server, run_id)
            assert champion(tmp_path, "idg") is None
            untokened = mlops(["approve", "idg", "--as", "alice"], approver)
            assert untokened.returncode == 2 and "MLOPS_APPROVER_TOKEN" in untokened.stderr
            posing = mlops(["approve", "idg", "--as", "bob"],
                           {**approver, "MLOPS_APPROVER_TOKEN": "glpat-alice"})
            assert posing.returncode == 2
            assert "--as bob but MLOPS_APPROVER_TOKEN belongs to alice" in posing.stderr
            author = mlops(["approve", "idg"], {**approver, "MLOPS_APPROVER_TOKEN": "glpat-dave"})
            assert author.returncode == 2 and "four eyes: dave built it" in author.stderr
            ok = mlops(["approve", "idg", "--comment", "reviewed"],
                       {**approver, "MLOPS_APPROVER_TOKEN": "glpat-alice"})
            assert ok.returncode == 0, ok.stderr
            assert "alice (GitLab user 11, verified)" in ok.stdout
            assert run.wait(timeout=120) == 0, (tmp_path / "run.log").read_text()[-3000:]
    finally:
        fake.stop()
    assert champion(tmp_path, "idg") == "1"
    [signed] = fake.commit_comments["d" * 40]
    assert signed["author"]["username"] == "alice" and run_id in signed["note"]
    history = mlops(["history", "idg"], env)
    assert "alice (GitLab user 11, verified)" in history.stdout
    assert "glpat-" not in history.stdout + (tmp_path / "run.log").read_text()
    assert mlops(["audit", "verify", "idg"], env).returncode == 0
