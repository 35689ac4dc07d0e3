"""Issue 21's insider, replayed as processes against real servers: an MLflow server and a Prefect
server on PostgreSQL, GitLab (identities, the approvers' tokens) as the fake. The insider, dave,
built every version and may approve others; he has write access to the MLflow store and his own
GitLab token, but neither MLOPS_AUDIT_KEY nor anyone else's token. Every attack is refused with
one line naming what it met, and production (the champion, the signed trail) is unchanged. (The
YAML-path run and the policy's floor are replayed in tests/integration/test_governance_attacks.py.)"""

from __future__ import annotations

import mlflow
import pytest
import yaml

from tests.conftest import config_yaml
from tests.e2e.conftest import REPO, cli_env, mlops
from tests.fakes.gitlab_api import FakeGitLab

pytestmark = pytest.mark.slow
NAME = "ins"
DEPLOY = """deploy:
  staging:
    smoke: {max_latency_ms: 2000}
  production:
    identity: gitlab
    approvers: [alice, dave]
"""
USERS = {"glpat-alice": {"id": 11, "username": "alice", "name": "Alice Approver"},
         "glpat-dave": {"id": 12, "username": "dave", "name": "Dave Builder"}}


@pytest.fixture(scope="module")
def world(mlflow_server, prefect_server, tmp_path_factory):
    """ins v1 was champion, v2 is champion, v3 is staged; all built by dave in a pipeline that
    held the audit key."""
    root = tmp_path_factory.mktemp("insider")
    (root / "configs").mkdir()
    fake = FakeGitLab(tokens={"glpat-pipeline": ["api"], **{t: ["api"] for t in USERS}},
                      users=USERS).start()
    pipeline = cli_env(
        MLFLOW_TRACKING_URI=mlflow_server, PREFECT_API_URL=prefect_server,
        MLOPS_HOME=str(root / "pipeline"), MLOPS_CONFIG_DIR=str(root / "configs"),
        MLOPS_DEVICE="cpu", MLOPS_AUDIT_KEY="the-protected-masked-key",
        CI_SERVER_URL=fake.url, CI_PROJECT_ID="42", CI_COMMIT_SHA="d" * 40,
        CI_COMMIT_REF_NAME="main", GITLAB_USER_LOGIN="dave",
        CI_COMMIT_AUTHOR="Dave Builder <dave@example.com>", MLOPS_GITLAB_TOKEN="glpat-pipeline")
    # v1, then v2 approved up front by alice with her own token; v3 from a YAML file in the
    # same command: a YAML path trains and stages, never promotes
    v3 = root / f"{NAME}-4.yaml"
    v3.write_text(config_yaml(name=NAME, n_trials=4, extra=DEPLOY))
    for trials, models in ((2, [NAME]), (3, [NAME, str(v3)])):
        (root / "configs" / f"{NAME}.yaml").write_text(
            config_yaml(name=NAME, n_trials=trials, extra=DEPLOY))
        run = mlops(["run", *models, "--as", "alice"],
                    {**pipeline, "MLOPS_APPROVER_TOKEN": "glpat-alice"}, timeout=600)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert f"{NAME} v3 staged; trained from a YAML path, which never promotes" in run.stdout
    # dave, on his laptop: his own token and store access, not the key
    insider = {**{k: v for k, v in pipeline.items()
                  if k not in ("MLOPS_AUDIT_KEY", "MLOPS_GITLAB_TOKEN")},
               "MLOPS_HOME": str(root / "insider"), "MLOPS_APPROVER_TOKEN": "glpat-dave"}
    client = mlflow.MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    assert champion(client) == "2"
    yield root, pipeline, insider, client
    fake.stop()


def champion(client) -> str | None:
    try:
        return str(client.get_model_version_by_alias(NAME, "champion").version)
    except mlflow.exceptions.MlflowException:
        return None


def trail_length(client) -> int:
    audit = client.get_experiment_by_name(f"audit/{NAME}")
    return len(client.search_runs([audit.experiment_id], max_results=1000))


def refused(result, code: int, text: str) -> None:
    out = result.stdout + result.stderr
    assert result.returncode == code, out[-2000:]
    assert text in out, out[-2000:]


def test_insider_attacks_are_refused_and_production_is_unchanged(world):
    root, pipeline, insider, client = world
    as_alice = {**pipeline, "MLOPS_APPROVER_TOKEN": "glpat-alice"}
    as_dave = {**pipeline, "MLOPS_APPROVER_TOKEN": "glpat-dave"}
    promote3 = ["promote", NAME, "3"]

    # a rewritten builder tag: dave approves his own version with his verified identity
    client.set_model_version_tag(NAME, "3", "built_by", "erin")
    refused(mlops(promote3, as_dave), 2, "tag built_by='erin' was edited after registration "
                                         "(sealed: 'dave')")
    client.set_model_version_tag(NAME, "3", "built_by", "dave")
    refused(mlops(promote3, as_dave), 2, "four eyes: dave built it")

    # a relabelled classification, and a check written as a tag
    client.set_model_version_tag(NAME, "3", "classification", "public")
    refused(mlops(promote3, as_alice), 2, "tag classification='public' was edited")
    client.set_model_version_tag(NAME, "3", "classification", "internal")
    policy = yaml.safe_load((REPO / "configs" / "policy.yaml").read_text())
    policy["environments"]["production"]["checks"].append("security_scan")
    (root / "policy-scan.yaml").write_text(yaml.safe_dump(policy))
    client.set_model_version_tag(NAME, "3", "check.security_scan", "passed")
    refused(mlops(promote3, {**as_alice, "MLOPS_POLICY": str(root / "policy-scan.yaml")}), 2,
            "check 'security_scan' has not passed (not recorded")
    client.delete_model_version_tag(NAME, "3", "check.security_scan")

    # an older version, a former champion: never a promotion
    refused(mlops(["promote", NAME, "1"], as_alice), 2,
            f"mlops rollback {NAME} 1")

    # an MR pipeline (unprotected ref), and the insider without the key
    refused(mlops(promote3, {**as_alice, "GITLAB_CI": "true", "CI_COMMIT_REF_PROTECTED": "false"}),
            2, "run only on protected refs (main is not protected)")
    head = trail_length(client)
    refused(mlops(promote3, insider), 2, f"no production change of {NAME} without "
                                         "MLOPS_AUDIT_KEY")
    assert trail_length(client) == head and champion(client) == "2"
    assert mlops(["audit", "verify", NAME], pipeline).returncode == 0


def test_an_alias_moved_by_hand_is_served_by_nothing_and_put_back_by_the_key_holder(world):
    root, pipeline, insider, client = world
    as_alice = {**pipeline, "MLOPS_APPROVER_TOKEN": "glpat-alice"}
    batch = root / "batch.parquet"
    assert mlops(["generate", "--rows", "300", "--output", str(batch)], insider).returncode == 0
    client.set_registered_model_alias(NAME, "champion", "1")
    moved = f"{NAME}@champion points at v1 but the signed trail says v2"
    for args in (["score", NAME, "--input", str(batch), "--output", str(root / "s.parquet")],
                 ["monitor", NAME, "--input", str(batch)], ["status", NAME]):
        refused(mlops(args, insider), 2, moved)
    for args in (["promote", NAME, "3"], ["rollback", NAME]):
        refused(mlops(args, as_alice), 2, moved)  # nothing laundered into the chain
    assert not (root / "s.parquet").exists()
    refused(mlops(["audit", "verify", NAME], pipeline), 1, "moved outside the pipeline")
    refused(mlops(["audit", "realign", NAME], insider), 2, "without MLOPS_AUDIT_KEY")
    refused(mlops(["audit", "realign", NAME, "--comment", "moved by hand"], as_alice), 0,
            f"{NAME}@champion: v1 -> v2")
    assert champion(client) == "2"
    assert mlops(["audit", "verify", NAME], pipeline).returncode == 0


def test_rollback_of_the_first_champion_leaves_production_as_it_is(world):
    _, pipeline, _, client = world
    as_alice = {**pipeline, "MLOPS_APPROVER_TOKEN": "glpat-alice"}
    refused(mlops(["rollback", NAME, "1"], as_alice), 0, "v2 -> v1")
    refused(mlops(["rollback", NAME], as_alice), 1, f"v1 is the first champion of {NAME}")
    assert champion(client) == "1"
    refused(mlops(["rollback", NAME, "2"], as_alice), 0, "v1 -> v2")
    assert mlops(["audit", "verify", NAME], pipeline).returncode == 0
