""".gitlab-ci.yml per pipeline source, evaluated by gitlab-ci-local (`make gitlab-ci-local`
installs it into ~/.cache/prefect-mlops and names it in GITLAB_CI_LOCAL): which pipeline GitLab
creates and which jobs it holds.

gitlab-ci-local 4.60.1 ignores `workflow:rules`, so the workflow rules are evaluated too as the
rules of one added probe job (`workflow-probe`) in the same file. Pipelines without a push (web,
schedule, api, trigger) evaluate `changes:` as true, as GitLab does."""

from __future__ import annotations

import json
import os
import subprocess
import warnings
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VERSION = "4.60.1"
LOCAL = REPO / ".tools" / "gitlab-ci-local" / "node_modules" / ".bin" / "gitlab-ci-local"
PROBE = "workflow-probe"
FEATURE, MAIN = "feature/claims-v2", "main"


def gitlab_ci_local() -> str:
    """GITLAB_CI_LOCAL (set by make), or one in .tools/, else a loud skip."""
    found = next((p for p in (os.environ.get("GITLAB_CI_LOCAL"), str(LOCAL))
                  if p and Path(p).exists()), None)
    if not found:
        message = (f"gitlab-ci-local {VERSION} is not installed: the per-source pipeline test is "
                   "SKIPPED (run `make gitlab-ci-local`; it needs npm)")
        warnings.warn(message, stacklevel=2)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A clone-like repository: a GitLab origin, main at the base commit, and one commit on top
    that changes a model config (so `changes:` rules have something to see)."""
    binary = gitlab_ci_local()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == VERSION, version.stdout + version.stderr
    root = tmp_path_factory.mktemp("ci-sources") / "checkout"
    (root.parent / "home").mkdir()
    root.mkdir()
    ci = yaml.safe_load((REPO / ".gitlab-ci.yml").read_text())
    rules = (ci.get("workflow") or {}).get("rules") or [{"when": "always"}]  # none: always
    ci[PROBE] = {"stage": "test", "script": ["true"], "rules": rules}
    (root / ".gitlab-ci.yml").write_text(yaml.safe_dump(ci, sort_keys=False))
    (root / "configs" / "models").mkdir(parents=True)
    (root / "configs" / "models" / "fraud.yaml").write_text("name: fraud\n")

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=ci", "-c", "user.email=ci@example.com", *args],
                       cwd=root, check=True, capture_output=True, timeout=60)

    git("init", "-q", "-b", MAIN)
    git("remote", "add", "origin", "git@gitlab.example.com:claims/models.git")
    git("add", "-A")
    git("commit", "-qm", "base")
    git("update-ref", "refs/remotes/origin/main", "HEAD")
    (root / "configs" / "models" / "fraud.yaml").write_text("name: fraud\n# tuned\n")
    git("commit", "-qam", "train fraud")
    return root


def pipeline(root: Path, source: str, branch: str | None = FEATURE, message: str = "fix: typo",
             validate: bool = False, **variables: str) -> list[str] | None:
    """The jobs GitLab would create (manual ones marked), or None when workflow:rules create no
    pipeline. `validate`: check the file against GitLab's JSON schema first (once is enough)."""
    pushed = source in ("push", "merge_request_event")
    given = {"CI_PIPELINE_SOURCE": source, "CI_COMMIT_MESSAGE": message,
             "CI_COMMIT_TITLE": message.splitlines()[0], "CI_DEFAULT_BRANCH": MAIN, **variables}
    args = [gitlab_ci_local(), "--list-json", "--home", str(root.parent / "home"),  # not ~/
            *([] if pushed else ["--no-evaluate-rule-changes"]),
            *([] if validate else ["--no-json-schema-validation"])]
    if branch:
        given.update(CI_COMMIT_BRANCH=branch, CI_COMMIT_REF_NAME=branch)
    else:
        args += ["--unset-variable", "CI_COMMIT_BRANCH"]
    for key, value in given.items():
        args += ["--variable", f"{key}={value}"]
    done = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = done.stdout[done.stdout.index("\n[\n") + 1:]  # after its warnings (also on stdout)
    jobs = {j["name"]: j["when"] for j in json.loads(listed)}
    if jobs.pop(PROBE) == "never":
        return None
    return [name + (" (manual)" if when == "manual" else "")
            for name, when in jobs.items() if when != "never"]


MR = {"CI_MERGE_REQUEST_IID": "12", "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": FEATURE,
      "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": MAIN}
OPEN_MR = {"CI_OPEN_MERGE_REQUESTS": "claims/models!12"}
FLOW_RUN = {"PREFECT__FLOW_RUN_ID": "0b5e1c9e-2f1d-4f34-9a3c-5d7a6f1e0c11",
            "MLOPS_RUNNER_TAG": "saas-linux-medium-amd64", "MLOPS_IMAGE": "reg/train:abc",
            "MLOPS_PIPELINE_NAME": "prefect brave-otter"}

# (source, branch, message, variables) -> jobs; None: no pipeline
CASES = {
    "push, no merge request": (("push", FEATURE, "fix: typo", {}), ["lint", "test"]),
    "push, merge request open": (("push", FEATURE, "fix: typo", OPEN_MR), None),
    "merge request event": (("merge_request_event", None, "fix: typo", MR), ["lint", "test"]),
    "push to main": (("push", MAIN, "fix: typo", {}), ["lint", "test", "prefect-deploy",
                                                       "reproduce-champions (manual)"]),
    "train fraud, push, no merge request": (("push", FEATURE, "train fraud", {}),
                                            ["lint", "test", "train"]),
    "train fraud, push, merge request open": (("push", FEATURE, "train fraud", OPEN_MR), None),
    "train fraud, merge request event": (("merge_request_event", None, "train fraud", MR),
                                         ["lint", "test", "train"]),
    "train fraud, push to main": (("push", MAIN, "train fraud", {}),
                                  ["lint", "test", "prefect-deploy", "train",
                                   "reproduce-champions (manual)"]),
    "schedule, reproduce": (("schedule", MAIN, "train fraud", {"MLOPS_REPRODUCE": "1"}),
                            ["reproduce-champions"]),
    "schedule, seed 003 retrain (moved to Prefect)": (
        ("schedule", MAIN, "train fraud", {"SCHEDULED_RETRAIN": "true",
                                           "TRAINING_DATA_DATE": "latest"}), []),
    "web, Run pipeline on main": (("web", MAIN, "train fraud", {}),
                                  ["lint", "test", "build-image", "prefect-deploy",
                                   "reproduce-champions (manual)"]),
    "web, branch with open merge request": (("web", FEATURE, "train fraud", OPEN_MR),
                                            ["lint", "test", "build-image"]),
    "api, no flow run": (("api", FEATURE, "train fraud", {}), ["lint", "test", "build-image"]),
    "trigger, no flow run": (("trigger", FEATURE, "train fraud", {}),
                             ["lint", "test", "build-image"]),
    "api, worker's training run": (("api", FEATURE, "train fraud", FLOW_RUN), ["flow-run"]),
    "api, worker's training run, merge request open": (
        ("api", FEATURE, "train fraud", {**FLOW_RUN, **OPEN_MR}), ["flow-run"]),
    "api, worker's deploy run": (
        ("api", MAIN, "train fraud", {**FLOW_RUN, "MLOPS_FLOW": "deploy", "MLOPS_MODEL": "fraud"}),
        ["deploy-run"]),
    "api, worker's deploy run, approvals in GitLab": (
        ("api", MAIN, "train fraud", {**FLOW_RUN, "MLOPS_FLOW": "deploy", "MLOPS_MODEL": "fraud",
                                      "MLOPS_APPROVAL_SOURCE": "gitlab-environment"}),
        ["deploy-run", "production-approval (manual)"]),
    "api, worker's resumed deploy run, approvals in GitLab": (
        ("api", MAIN, "train fraud", {**FLOW_RUN, "MLOPS_FLOW": "deploy", "MLOPS_MODEL": "fraud",
                                      "MLOPS_APPROVAL_SOURCE": "gitlab-environment",
                                      "MLOPS_RESUMED": "true"}),
        ["deploy-run"]),
    "api, worker's training run, approvals in GitLab": (
        ("api", FEATURE, "train fraud", {**FLOW_RUN, "MLOPS_APPROVAL_SOURCE": "gitlab-environment"}),
        ["flow-run"]),
    "push to main, approvals in GitLab": (
        ("push", MAIN, "fix: typo", {"MLOPS_APPROVAL_SOURCE": "gitlab-environment"}),
        ["lint", "test", "prefect-deploy", "reproduce-champions (manual)"]),
    "trigger, worker's run on main": (("trigger", MAIN, "fix: typo", FLOW_RUN), ["flow-run"]),
    "tag": (("push", None, "fix: typo", {"CI_COMMIT_TAG": "v1.2.0"}), None),
}


@pytest.fixture(scope="module")
def measured(checkout) -> dict[str, list[str] | None]:
    """Every case, two gitlab-ci-local processes at a time, after one schema-validated run."""
    from concurrent.futures import ThreadPoolExecutor

    assert pipeline(checkout, "push", validate=True) == ["lint", "test"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        found = pool.map(lambda case: pipeline(checkout, case[0], case[1], case[2], **case[3]),
                         [case for case, _ in CASES.values()])
        return dict(zip(CASES, found, strict=True))


def test_jobs_per_pipeline_source(measured):
    expected = {name: jobs for name, (_, jobs) in CASES.items()}
    assert measured == expected


def test_one_change_trains_once(measured):
    """While an MR is open a push creates the MR pipeline only; schedules, web and API pipelines
    of the same commit never train; the worker's pipelines run one job."""
    def trains(*names: str) -> int:
        return sum((measured[n] or []).count("train") for n in names)

    assert trains("train fraud, push, merge request open", "train fraud, merge request event") == 1
    assert trains("train fraud, push, no merge request") == 1
    assert trains("schedule, reproduce", "schedule, seed 003 retrain (moved to Prefect)",
                  "web, Run pipeline on main", "web, branch with open merge request",
                  "api, no flow run", "trigger, no flow run") == 0
    for name, jobs in measured.items():
        if "worker" in name:  # one job runs the flow; a manual approval job may wait beside it
            assert len([j for j in jobs or [] if not j.endswith("(manual)")]) == 1, name


def test_dag_interruptible_reports_environments():
    """Training needs lint and the image, not the 90-minute tests; a newer pipeline cancels only
    jobs that move nothing; the deploy run is on GitLab's production environment, one per model."""
    ci = yaml.safe_load((REPO / ".gitlab-ci.yml").read_text())
    needs = {name: [n if isinstance(n, str) else n["job"] for n in ci[name]["needs"]]
             for name in ("lint", "test", "build-image", "train", "prefect-deploy", "flow-run",
                          "deploy-run", "reproduce-champions")}
    assert "test" not in needs["train"] and "lint" in needs["train"]
    assert needs["prefect-deploy"][:2] == ["lint", "test"]
    assert all(needs[n] == [] for n in ("lint", "test", "build-image", "flow-run", "deploy-run"))
    interruptible = {n for n, j in ci.items() if isinstance(j, dict) and j.get("interruptible")}
    assert interruptible == {"lint", "test", "build-image"}
    assert ci["test"]["artifacts"]["reports"]["junit"] == "reports/junit.xml"
    assert "--junitxml=reports/junit.xml" in ci["test"]["script"][0]
    deploy = ci["deploy-run"]
    assert deploy["environment"]["name"] == "production"
    assert deploy["environment"]["action"] == "prepare" and deploy["environment"]["url"]
    assert deploy["resource_group"] == "production-$MLOPS_MODEL"
    assert deploy["script"] == ci["flow-run"]["script"]
    assert ci["prefect-deploy"]["resource_group"] == "prefect-deployments"


def test_production_approval_is_a_blocked_deployment_job_that_only_wakes_the_run():
    """Identity gitlab-environment: the job deploys to the protected production environment
    (action start, so GitLab blocks it until its approvals are given), is manual, never
    interruptible, holds no runner before it is played, and its script only wakes the run."""
    ci = yaml.safe_load((REPO / ".gitlab-ci.yml").read_text())
    job = ci["production-approval"]
    assert job["environment"]["name"] == "production"
    assert job["environment"]["action"] == "start"
    assert job["environment"]["url"] == ci["deploy-run"]["environment"]["url"]
    assert job["rules"][0] == {"if": "$MLOPS_RESUMED", "when": "never"}
    assert [r.get("when") for r in job["rules"]] == ["never", "manual"]
    assert '$MLOPS_FLOW == "deploy"' in job["rules"][1]["if"]
    assert '$MLOPS_APPROVAL_SOURCE == "gitlab-environment"' in job["rules"][1]["if"]
    assert job["needs"] == [] and not job.get("interruptible")
    assert job["script"] == ['mlops approve "$PREFECT__FLOW_RUN_ID"']
    assert job["image"] == ci["deploy-run"]["image"] and job["tags"] == ci["deploy-run"]["tags"]


def _deploy_run_variables(**policy) -> dict[str, str]:
    """What the gitlab-ci worker sends for a deploy run of fraud whose job variables carry the
    training pipeline's identity (tasks/release/handoff.py forwards CI_FORWARDED)."""
    import uuid

    from prefect.client.schemas.objects import Flow, FlowRun, FlowRunPolicy

    from deployments.gitlab_job import GitLabCIJobConfiguration
    from tasks.core.settings import CI_FORWARDED

    training = {k: f"training-{k.lower()}" for k in CI_FORWARDED}
    config = GitLabCIJobConfiguration(env={**training, "MLOPS_APPROVAL_SOURCE":
                                           "gitlab-environment"}, runner_tag="cpu")
    run = FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name="calm-heron",
                  parameters={"model": "fraud", "version": "3"},
                  empirical_policy=FlowRunPolicy(**policy))
    config.prepare_for_flow_run(run, flow=Flow(name="deploy"))
    return config.pipeline_variables("prefect calm-heron", "http://10.0.0.5:4200/api")[0]


def test_the_resumed_deploy_runs_pipeline_holds_no_second_approval_job(checkout):
    """The worker marks the pipeline of a run that waited before (resumed after its approval):
    evaluated with exactly the variables it sends, the first pipeline holds production-approval,
    the resumed run's pipeline only deploy-run."""
    first = _deploy_run_variables()
    resumed = _deploy_run_variables(resuming=True, pause_keys={"gitlab-approval-1"})
    assert "MLOPS_RESUMED" not in first and resumed["MLOPS_RESUMED"] == "true"
    assert _deploy_run_variables(pause_keys={"gitlab-approval-1"})["MLOPS_RESUMED"] == "true"
    assert pipeline(checkout, "api", MAIN, **first) == ["deploy-run",
                                                         "production-approval (manual)"]
    assert pipeline(checkout, "api", MAIN, **resumed) == ["deploy-run"]


def test_the_training_pipelines_ids_never_override_gitlabs_own_in_the_flow_run_pipeline():
    """Attack: the training pipeline's CI_PIPELINE_ID/CI_JOB_ID (forwarded to the deploy run as
    job variables) sent as pipeline variables would override the values GitLab sets in the deploy
    run's own pipeline (pipeline variables take precedence over predefined ones): its records and
    GitLab deployments would name another pipeline and job. Only the merge request travels."""
    sent = _deploy_run_variables()
    assert not [k for k in sent if k.startswith(("CI_", "GITLAB_"))
                and k != "CI_MERGE_REQUEST_IID"], sorted(sent)
    assert sent["CI_MERGE_REQUEST_IID"] == "training-ci_merge_request_iid"


def test_skips_loudly_without_gitlab_ci_local(monkeypatch):
    monkeypatch.delenv("GITLAB_CI_LOCAL", raising=False)
    monkeypatch.setattr(f"{__name__}.LOCAL", Path("/nonexistent/gitlab-ci-local"))
    with pytest.warns(UserWarning, match="SKIPPED"), pytest.raises(pytest.skip.Exception):
        gitlab_ci_local()


def test_make_test_installs_the_pinned_version():
    makefile = (REPO / "Makefile").read_text()
    assert f"GITLAB_CI_LOCAL_VERSION := {VERSION}" in makefile
    assert "\ntest: install browser gitlab-ci-local " in makefile
    assert "\n\t$(PYTEST) $(PYTEST_ARGS)\n" in makefile
