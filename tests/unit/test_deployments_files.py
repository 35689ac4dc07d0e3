"""prefect.yaml, the work pools, the image tag, the Dockerfile and .gitlab-ci.yml, checked here."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from deployments import image
from deployments.manifest import check_manifest, deployment_name
from deployments.pools import POOL_TYPES, base_job_template, load_pools, render, template_path
from deployments.schedules import from_manifest, next_cron
from deployments.steps import enter_project
from tasks.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "models"


def test_repository_prefect_yaml_matches_configs_and_pools():
    assert check_manifest(REPO / "prefect.yaml", CONFIGS) == []


def _copy(tmp_path: Path) -> tuple[Path, Path]:
    configs = tmp_path / "configs"
    shutil.copytree(CONFIGS, configs)
    manifest = tmp_path / "prefect.yaml"
    shutil.copy(REPO / "prefect.yaml", manifest)
    return manifest, configs


def test_deployment_naming_a_model_without_config(tmp_path):
    manifest, configs = _copy(tmp_path)
    (configs / "settlement.yaml").unlink()
    problems = check_manifest(manifest, configs)
    assert any("training-pipeline/settlement names model 'settlement', which has no config"
               in p for p in problems), problems


def test_config_naming_a_pool_prefect_yaml_lacks(tmp_path):
    manifest, configs = _copy(tmp_path)
    fraud = configs / "fraud.yaml"
    fraud.write_text(fraud.read_text().replace("work_pool: cpu-runners", "work_pool: tpu-runners"))
    problems = check_manifest(manifest, configs)
    assert any("fraud.yaml names work pool 'tpu-runners', which" in p and "lacks" in p
               for p in problems), problems
    assert any("training-pipeline/fraud uses work pool 'cpu-runners'" in p for p in problems)


def test_deployment_on_the_wrong_pool_or_without_schedule(tmp_path):
    manifest, configs = _copy(tmp_path)
    text = manifest.read_text().replace("    work_pool: *gpu-runners", "    work_pool: *cpu-runners")
    manifest.write_text(text.replace("      - *weekly-retrain\n", "      []\n"))
    problems = check_manifest(manifest, configs)
    assert any("training-pipeline/damage uses work pool 'cpu-runners'" in p for p in problems)
    assert sum("lacks the weekly retrain schedule" in p for p in problems) == 3


def test_missing_drift_trigger_and_daily_deployments(tmp_path):
    manifest, configs = _copy(tmp_path)
    text = manifest.read_text()
    text = text.replace("match: {prefect.resource.id: mlops.model.damage}",
                        "match: {prefect.resource.id: mlops.model.fraud}")
    text = text.replace("      - *daily-monitoring\n", "      []\n")
    cut = text.index("  - <<: *scoring\n    name: score-settlement")
    text = text[:cut] + text[text.index("  # monitoring/monitor-<model>"):]
    manifest.write_text(text)
    problems = check_manifest(manifest, configs)
    assert any("training-pipeline/retrain-damage has no trigger on mlops.model.drift-detected"
               in p
               for p in problems), problems
    assert any("settlement.yaml has no batch-scoring/score-settlement deployment" in p for p in problems)
    assert sum("lacks a daily schedule" in p for p in problems) == 3
    assert len(problems) == 5, problems


def test_deployment_names_say_model_and_purpose_once(tmp_path):
    """The Prefect UI lists deployments by name: `fraud` three times (training, scoring,
    monitoring) could not be told apart."""
    manifest, configs = _copy(tmp_path)
    assert check_manifest(manifest, configs) == []
    manifest.write_text(manifest.read_text().replace("    name: score-fraud\n",
                                                     "    name: fraud\n"))
    problems = check_manifest(manifest, configs)
    assert any("batch-scoring/fraud serves model 'fraud'; name it 'score-fraud'" in p
               for p in problems), problems
    assert any("deployment name 'fraud' is used by training-pipeline/fraud and "
               "batch-scoring/fraud" in p for p in problems), problems
    assert len(problems) == 2, problems


def test_check_deployments_cli_exit_code(tmp_path):
    manifest, configs = _copy(tmp_path)
    (configs / "damage.yaml").unlink()
    env = {"PATH": str(Path(shutil.which("python") or "").parent), "MLOPS_CONFIG_DIR": str(configs)}
    mlops = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "mlops"
    result = subprocess.run([str(mlops), "check-deployments", "--prefect-file", str(manifest)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert "names model 'damage', which has no config" in result.stderr


def test_committed_pool_templates_are_current():
    for pool in load_pools().values():
        for kind in POOL_TYPES:
            assert template_path(pool.name, kind).read_text() == render(
                base_job_template(pool, kind)), f"run python -m deployments.pools ({pool.name})"


def test_gpu_pool_asks_docker_for_gpus_and_fails_without_one():
    gpu = load_pools()["gpu-runners"]
    docker = base_job_template(gpu, "docker")["variables"]["properties"]
    assert docker["container_create_kwargs"]["default"]["device_requests"] == [
        {"driver": "nvidia", "count": -1, "capabilities": [["gpu"]]}]
    assert docker["env"]["default"] == {"MLOPS_DEVICE": "cuda", "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}
    process = base_job_template(gpu, "process")["variables"]["properties"]
    assert process["env"]["default"] == {"MLOPS_DEVICE": "cuda", "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}
    assert "saas-linux-medium-amd64-gpu-standard" in gpu.runner_tags


def test_image_tag_matches_the_shell_one_liner_in_gitlab_ci():
    shell = subprocess.run("cat Dockerfile uv.lock | sha256sum | cut -c1-16", shell=True,
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    assert image.content_tag(REPO) == shell
    assert "cat Dockerfile uv.lock | sha256sum | cut -c1-16" in (REPO / ".gitlab-ci.yml").read_text()


def test_image_built_only_when_missing(tmp_path, monkeypatch):
    for name in image.HASHED_FILES:
        (tmp_path / name).write_text(name)
    dockerfile = str(tmp_path / "Dockerfile")
    built: list[dict] = []

    def build(**kw):
        built.append(kw)
        return {"image_name": kw["image_name"], "image": f"{kw['image_name']}:{kw['tag']}"}

    monkeypatch.setenv("MLOPS_IMAGE_NAME", "registry.example/acme/train")
    present = image.build_image(dockerfile, exists=lambda ref: "registry", build=build)
    assert not present["built"] and built == []
    assert present["image"] == f"registry.example/acme/train:{image.content_tag(tmp_path)}"
    missing = image.build_image(dockerfile, base_image="python:3.12-slim", exists=lambda r: None,
                                build=build)
    assert missing["built"] and built[0]["buildargs"] == {"BASE_IMAGE": "python:3.12-slim"}
    (tmp_path / "uv.lock").write_text("changed")
    assert image.build_image(dockerfile, exists=lambda r: "registry", build=build)["tag"] != \
        present["tag"]
    monkeypatch.setenv("MLOPS_IMAGE_BUILD", "skip")
    skipped = image.build_image(dockerfile, exists=lambda r: pytest.fail("no docker call"))
    assert skipped["found"] == "skipped"
    pushed: list = []
    assert not image.push_image("n", "t", "registry", push=lambda **kw: pushed.append(kw))["pushed"]
    assert image.push_image("n", "t", "built", push=lambda **kw: pushed.append(kw))["pushed"]
    assert pushed == [{"image_name": "n", "tag": "t"}]
    monkeypatch.setenv("MLOPS_IMAGE_BUILD", "sometimes")
    with pytest.raises(ConfigError, match="MLOPS_IMAGE_BUILD must be one of"):
        image.build_image(dockerfile)


def test_weekly_schedule_next_run():
    sunday = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
    assert next_cron("0 2 * * 1", "UTC", sunday) == datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    berlin = next_cron("0 2 * * 1", "Europe/Berlin", sunday)
    assert berlin.utcoffset().total_seconds() == 3600 and berlin.hour == 2
    rows = {r.deployment: r for r in from_manifest(REPO / "prefect.yaml", sunday)}
    models = ("fraud", "damage", "settlement")
    assert set(rows) == {deployment_name(flow, m) for m in models
                         for flow in ("training-pipeline", "batch-scoring", "monitoring")}
    assert "batch-scoring/score-fraud" in rows and "monitoring/monitor-fraud" in rows
    expected = {"training-pipeline": "2026-11-23T02:00", "batch-scoring": "2026-11-23T05:00",
                "monitoring": "2026-11-23T06:00"}
    for name, row in rows.items():
        assert row.next_run.isoformat().startswith(expected[name.split("/")[0]]), name


def test_schedules_read_as_plain_yaml_equal_the_validated_ones(tmp_path):
    """`mlops status` with no server reads prefect.yaml without Prefect: the same rows as through
    Prefect's model of the file, next runs from the croniter Prefect's server uses."""
    from prefect._vendor.croniter import croniter

    sunday = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
    plain = from_manifest(REPO / "prefect.yaml", sunday, validate=False)
    assert plain == from_manifest(REPO / "prefect.yaml", sunday) and len(plain) == 9
    for cron in ("0 2 * * 1", "*/15 9-17 * * 1-5", "0 0 1,15 * 5", "30 3 L * *"):
        for tz in ("UTC", "Europe/Berlin", "America/New_York"):
            start = sunday.astimezone(ZoneInfo(tz))
            assert next_cron(cron, tz, sunday) == croniter(cron, start).get_next(datetime)
    broken = tmp_path / "prefect.yaml"
    broken.write_text("deployments: {name: x}\n")
    with pytest.raises(ConfigError, match="no list of deployments"):
        from_manifest(broken, validate=False)
    broken.write_text("deployments: [\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        from_manifest(broken, validate=False)


def test_pull_step_needs_a_project_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("MLOPS_PROJECT_DIR", raising=False)
    with pytest.raises(RuntimeError, match="MLOPS_PROJECT_DIR is not set"):
        enter_project()
    with pytest.raises(RuntimeError, match="holds no flows/training.py"):
        enter_project(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert enter_project(str(REPO)) == {"directory": str(REPO)}
    assert Path.cwd() == REPO


def test_dockerfile_passes_hadolint():
    hadolint = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "hadolint"
    result = subprocess.run([str(hadolint), "Dockerfile"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (REPO / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=nvidia/cuda" in text and "ARG XGBOOST=gpu" in text
    assert text.count('uv sync --frozen --no-default-groups --group "${XGBOOST}"') == 2
    assert "\nUSER 10001" in text


def test_gitlab_ci_pipeline_shape():
    """A flow-run job (and deploy-run for the deploy flow) for the gitlab-ci worker, every other
    job kept out of its pipelines, and no `--run-once` worker jobs any more. Which jobs each
    pipeline source gets: tests/unit/test_gitlab_ci_sources.py."""
    ci = yaml.safe_load((REPO / ".gitlab-ci.yml").read_text())
    skip = {"if": "$PREFECT__FLOW_RUN_ID", "when": "never"}
    jobs = {n: j for n, j in ci.items() if not n.startswith(".") and isinstance(j, dict)
            and n not in ("variables", "workflow", "default")}
    assert set(jobs) == {"lint", "test", "build-image", "prefect-deploy", "train", "flow-run",
                         "deploy-run", "production-approval", "reproduce-champions"}
    for name, job in jobs.items():
        if name not in ("flow-run", "deploy-run", "production-approval"):
            assert job["rules"][0] == skip, name
    assert ci["build-image"]["rules"][-1] == {"changes": ["Dockerfile", "uv.lock"]}
    assert ci["train"]["rules"][1:] == [{"if": '$CI_PIPELINE_SOURCE =~ /^(push|merge_request_event)$/'
                                               " && $CI_COMMIT_MESSAGE =~ /^train /"}]
    assert ".venv/bin/mlops ci" in ci["train"]["script"]
    assert ".venv/bin/mlops pools apply --type gitlab-ci" in ci["prefect-deploy"]["script"]
    assert ci["test"]["script"][0].startswith("make test ")
    run = ci["flow-run"]
    assert run["rules"] == [{"if": '$PREFECT__FLOW_RUN_ID && $MLOPS_FLOW == "deploy"', "when": "never"},
                            {"if": "$PREFECT__FLOW_RUN_ID"}]
    assert run["tags"] == ["$MLOPS_RUNNER_TAG"] and run["image"] == "$MLOPS_IMAGE"
    assert run["script"] == ['prefect flow-run execute "$PREFECT__FLOW_RUN_ID"']
    assert run["variables"]["MLOPS_PROJECT_DIR"] == "$CI_PROJECT_DIR"
    assert ci["workflow"]["name"] == "$MLOPS_PIPELINE_NAME"
    rebuild = ci["reproduce-champions"]  # scheduled, or by hand on the default branch only
    assert rebuild["rules"][1:] == [
        {"if": '$CI_PIPELINE_SOURCE == "schedule" && $MLOPS_REPRODUCE == "1"'},
        {"if": '$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH && $CI_PIPELINE_SOURCE != "schedule"',
         "when": "manual", "allow_failure": True}]
    assert "reproduce \"$model\" champion --show-commit" in rebuild["script"][1]
    assert "UV_PROJECT_ENVIRONMENT=" in rebuild["script"][1]  # one environment for every worktree
    assert "make install" not in rebuild["script"][1]
    assert rebuild["variables"]["GIT_DEPTH"] == 0
    assert "--run-once" not in (REPO / ".gitlab-ci.yml").read_text()


def test_a_deployment_parameter_holding_credentials(tmp_path):
    """The server keeps and shows deployment parameters: a data URL goes there redacted."""
    manifest, configs = _copy(tmp_path)
    text = manifest.read_text().replace('input: "data/incoming/claims-{date}.parquet"',
                                        'input: "s3://AKIAKEY:s3cret@bucket/claims-{date}.parquet"', 1)
    manifest.write_text(text)
    problems = check_manifest(manifest, configs)
    [problem] = [p for p in problems if "credentials" in p]
    assert "batch-scoring/score-fraud parameter 'input' holds credentials" in problem
    assert "s3cret" not in problem and "MLOPS_DATA_URLS_BLOCK" in problem
    manifest.write_text(text.replace("AKIAKEY:s3cret@", "***@"))
    assert check_manifest(manifest, configs) == []
