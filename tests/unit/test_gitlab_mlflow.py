"""GitLab's MLflow API adapter: names, versions, the pointer log and call guarding; and
registration against tests/fakes/gitlab_mlflow.py (GitLab's answers, from gitlabhq's source) in
both behaviours of GitLab's `model-versions/create`: "older" ignores `run_id`, "newer" promotes
it and refuses a run outside the model's experiment."""

from __future__ import annotations

import io
import tarfile
import warnings
from pathlib import Path

import pytest
import requests
from google.protobuf.json_format import ParseError
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException

from tasks.adapters.gitlab_mlflow import (
    GitLabRegistry,
    GuardedClient,
    UnsupportedByGitLab,
    flat_name,
    is_gitlab_mlflow,
    next_patch,
)
from tasks.adapters.registries import open_registry
from tasks.core.errors import ConfigError, RegistryError
from tasks.core.settings import Settings
from tests.conftest import trail_here
from tests.fakes.gitlab_mlflow import MODES, serve

GITLAB = "https://gitlab.example.com/api/v4/projects/42/ml/mlflow"


def test_gitlab_uris_are_recognised():
    assert is_gitlab_mlflow(GITLAB) and is_gitlab_mlflow(GITLAB + "/")
    assert is_gitlab_mlflow("https://gitlab.example.com/api/v4/projects/claims%2Fmodels/ml/mlflow")
    assert not is_gitlab_mlflow("http://127.0.0.1:5000")
    assert not is_gitlab_mlflow(GITLAB + "/api/2.0/mlflow")


def test_flat_names_and_next_versions():
    assert flat_name("plots", "roc.png") == "plots-roc.png"
    assert flat_name("validation/x/", "report.md") == "validation-x-report.md"
    assert flat_name(None, "gate/decision.json") == "gate-decision.json"
    assert flat_name(None, "model.tar.gz") == "model.tar.gz"
    assert flat_name("plots", "roc (1).png") == "plots-roc _1_.png"  # GitLab's file name rule
    assert next_patch(None) == "1.0.0"
    assert next_patch("1.0.9") == "1.0.10"
    assert next_patch("2.3.1-rc.1") == "2.3.2"


class FakeClient:
    def unknown(self):
        raise RestException({"error": "404 Not Found"})

    def old_style(self):
        raise MlflowException("API request to endpoint /api/2.0/mlflow/registered-models/alias "
                              "failed with error code 404 != 200. Response body: ''")

    def missing(self):
        raise RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such run"})

    def fine(self, value):
        return value


def test_only_unknown_routes_become_unsupported_errors():
    client = GuardedClient(FakeClient())
    assert client.fine(3) == 3
    with pytest.raises(UnsupportedByGitLab, match="^GitLab's MLflow API does not support unknown;"):
        client.unknown()
    with pytest.raises(UnsupportedByGitLab,
                       match=r"old_style \(/api/2.0/mlflow/registered-models/alias answered"):
        client.old_style()
    with pytest.raises(RestException, match="no such run"):  # a plain not-found stays one
        client.missing()


def test_a_gitlab_uri_needs_a_token(monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", GITLAB)
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="set MLFLOW_TRACKING_TOKEN"):
        open_registry(Settings.from_env())
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "glpat-x")
    registry = open_registry(Settings.from_env())  # no request is made until it is used
    assert isinstance(registry, GitLabRegistry)


def test_aliases_are_the_audit_chain_and_a_forged_pointer_does_not_count(monkeypatch, tmp_path):
    """GitLab cannot store aliases: the audit chain's moves are the pointers (shown here on the
    local store). A pointer written outside the pipeline, future-dated, counts for nothing."""
    from tasks.adapters.audit_trail import event

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    registry = GitLabRegistry(Settings.from_env().tracking_uri)
    trail = trail_here(registry, "m")
    assert registry.alias_version("m", "champion") is None
    for action, alias, version in (("promoted", "champion", "1.0.0"),
                                   ("staged", "staging", "1.0.1"),
                                   ("promotion-intent", "champion", "1.0.1")):
        registry.move_alias("m", alias, version)  # nothing to write: the record is the pointer
        trail.write(event(action, "production", None, version, "alice", alias=alias))
    assert registry.alias_version("m", "champion") == "1.0.1"
    assert registry.alias_version("m", "staging") == "1.0.1"
    trail.write(event("rolled-back", "production", "1.0.1", None, "alice", alias="champion"))
    assert registry.alias_version("m", "champion") is None
    forged = registry.start_run("audit/m", "forged", {})
    registry.log_run(forged, params={"seq": "5", "action": "promoted", "alias": "champion",
                                     "to_version": "6.6.6", "prev_hash": "0" * 64,
                                     "hash": "1" * 64, "at": "2999-01-01T00:00:00+00:00"})
    assert registry.alias_version("m", "champion") is None


# -- registration against GitLab's answers, both behaviours -------------------------------------
@pytest.fixture(params=MODES)
def gitlab(request, monkeypatch):
    yield from serve(request.param, monkeypatch)


@pytest.fixture
def model_dir(tmp_path) -> Path:
    """A model folder with a file in a sub-folder (the packed upload keeps any extra file)."""
    folder = tmp_path / "model"
    (folder / "extra").mkdir(parents=True)
    (folder / "model_card.md").write_text("# fraud\n")
    (folder / "model.ubj").write_bytes(b"booster")
    (folder / "extra" / "manifest.json").write_text("{}")
    return folder


def trained(registry: GitLabRegistry, name: str = "fraud", run_key: str = "k1") -> str:
    """A training run as the pipeline makes one, with its params, metrics and a file."""
    run = registry.start_run(registry.training_experiment(name), f"{name}-run", {"run_key": run_key})
    registry.log_run(run, params={"training.seed": 1}, metrics={"test_roc_auc": 0.9})
    registry.log_text(run, "# validation", "validation/report.md")
    return run


def register(registry, run: str, model_dir: Path, run_key: str = "k1", **tags):
    return registry.register("fraud", run, model_dir, {"run_key": run_key,
                                                       "artifact_sha256": "abc", **tags}, "card")


def test_first_registration_of_a_new_model_is_1_0_0(gitlab, model_dir, tmp_path):
    registry = GitLabRegistry(gitlab.url)
    run = trained(registry)
    assert gitlab.ml.model("fraud") and gitlab.ml.candidate(eid=run).experiment.name == \
        "[model]fraud"  # trained in the model's experiment, which GitLab made with the model
    ref = register(registry, run, model_dir)
    assert (ref.version, ref.run_id) == ("1.0.0", run)
    mv = gitlab.ml.version("fraud", "1.0.0")
    version_run = gitlab.ml.version_candidate(mv)
    files = gitlab.version_files("fraud", "1.0.0")
    if gitlab.mode == "newer":  # the training run is the version's run: its files are the version's
        assert version_run.eid == run
        assert files == {"model.tar.gz", "model_card.md", "validation-report.md"}
    else:  # GitLab made a run of its own: the training's params and metrics are copied to it
        assert version_run.eid != run and version_run.params == {"training.seed": "1"}
        assert [m["key"] for m in version_run.metrics] == ["test_roc_auc"]
        assert files == {"model.tar.gz", "model_card.md"}
    assert mv.metadata["mlops.training_run_id"] == run and "" not in mv.metadata.values()
    assert gitlab.ml.candidate(eid=run).metadata["mlops.registered_version"] == "1.0.0"
    with tarfile.open(fileobj=io.BytesIO(mv.package.files["model.tar.gz"])) as tar:
        assert sorted(tar.getnames()) == ["extra/manifest.json", "model.ubj", "model_card.md"]
    local = Path(registry.download_model(ref, str(tmp_path / "dl")))
    assert (local / "extra" / "manifest.json").read_text() == "{}"

    assert registry.find_version("fraud", "k1").version == "1.0.0"
    assert register(registry, run, model_dir).version == "1.0.0"  # idempotent by run key
    registry.training_experiment("fraud")  # the model is found again, however GitLab lists it
    assert len(gitlab.ml.versions) == 1
    assert [c for c in gitlab.calls if c[2] >= 400] == [
        ("GET", f"{gitlab.project}/ml/mlflow/api/2.0/mlflow/registered-models/get", 404)]
    assert not [c for c in gitlab.calls if "registered-models/search" in c[1]]


def test_get_latest_versions_on_an_empty_model(gitlab):
    """GitLab answers `{"model_versions":[null]}`, which MLflow's client cannot parse."""
    client = MlflowClient(gitlab.url, gitlab.url)
    client.create_registered_model("fraud")
    with pytest.raises(ParseError, match="null is not allowed"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client.get_latest_versions("fraud")
    assert GitLabRegistry(gitlab.url)._latest("fraud") is None
    assert GitLabRegistry(gitlab.url)._latest("no-such-model") is None


def test_a_taken_version_is_skipped_and_a_pinned_one_refused(gitlab, model_dir):
    registry = GitLabRegistry(gitlab.url)
    register(registry, trained(registry), model_dir)
    model = gitlab.ml.model("fraud")
    # another pipeline takes 1.0.1 between our look at the latest version and our create
    gitlab.before_version.append(
        lambda: gitlab.ml.create_model_version(model, "1.0.1", "", [], None))
    assert register(registry, trained(registry, run_key="k2"), model_dir, "k2").version == "1.0.2"
    assert [ref.version for ref in registry.versions("fraud")] == ["1.0.0", "1.0.2"]  # ours
    assert sum(1 for c in gitlab.calls if c[1].endswith("model-versions/create")
               and c[2] == 400) == 1

    third = trained(registry, run_key="k3")
    with pytest.raises(RegistryError, match=r"^GitLab refused version 1\.0\.0 of fraud: Version "
                       r"has already been taken \(registry.tags pins gitlab.version\)$"):
        register(registry, third, model_dir, "k3", **{"gitlab.version": "1.0.0"})
    assert "mlops.registered_version" not in gitlab.ml.candidate(eid=third).metadata
    with pytest.raises(RestException) as raw:
        MlflowClient(gitlab.url, gitlab.url).create_model_version(
            "fraud", source="", tags={"gitlab.version": "1.0.0"})
    assert raw.value.json == {"error_code": "INVALID_PARAMETER_VALUE",
                              "message": ["Version has already been taken"]}


def test_a_non_semver_version_is_refused_with_gitlabs_message(gitlab, model_dir):
    registry = GitLabRegistry(gitlab.url)
    run = trained(registry)
    for bad in ("v2.0.0", "01.0.0", "2.0"):
        with pytest.raises(RegistryError, match=f"^GitLab refused version {bad} of fraud: "
                                                "Version must be semantic version$"):
            register(registry, run, model_dir, **{"gitlab.version": bad})
    assert gitlab.ml.versions == [] and registry.find_version("fraud", "k1") is None
    assert register(registry, run, model_dir, **{"gitlab.version": "2.0.0+build.7"}).version == \
        "2.0.0+build.7"  # semver.org's rule: build metadata is allowed


def test_a_run_from_another_experiment(gitlab, model_dir):
    """Newer GitLab promotes only a run of `[model]<name>`; older GitLab ignores `run_id`."""
    registry = GitLabRegistry(gitlab.url)
    registry.ensure_registered_model("fraud")
    elsewhere = registry.start_run("fraud", "notebook-run", {"run_key": "k1"})
    if gitlab.mode == "newer":
        with pytest.raises(RegistryError, match="^GitLab refused version 1.0.0 of fraud: Run's "
                                                "experiment does not belong to this model$"):
            register(registry, elsewhere, model_dir)
        assert gitlab.ml.versions == []
    else:
        assert register(registry, elsewhere, model_dir).version == "1.0.0"
        assert gitlab.ml.version_candidate(gitlab.ml.versions[0]).eid != elsewhere


def test_an_interrupted_upload_then_a_retrain(gitlab, model_dir, tmp_path):
    registry = GitLabRegistry(gitlab.url)
    run = trained(registry)
    gitlab.failing_uploads = 1  # object storage fails: GitLab answers 403
    with pytest.raises(requests.HTTPError, match="403"):
        register(registry, run, model_dir)
    assert "model.tar.gz" not in gitlab.version_files("fraud", "1.0.0")  # a version, no files
    with pytest.raises(RegistryError, match=r"fraud v1\.0\.0 has no model\.tar\.gz in GitLab "
                                            r"\(its upload did not finish\); train again"):
        registry.download_version("fraud", "1.0.0", tmp_path / "broken")
    assert registry.find_version("fraud", "k1") is None  # so the same inputs train again

    ref = register(registry, trained(registry), model_dir)
    assert ref.version == "1.0.1" and registry.find_version("fraud", "k1").version == "1.0.1"
    assert {"model.tar.gz", "model_card.md"} <= gitlab.version_files("fraud", "1.0.1")
    assert Path(registry.download_model(ref, str(tmp_path / "ok")), "model.ubj").exists()


def test_a_retried_register_resumes_the_version_its_run_made(gitlab, model_dir):
    """GitLab promotes a run once ("Run has already a model version"): a retry of the register
    step picks up the version its run created and finishes the upload."""
    registry = GitLabRegistry(gitlab.url)
    run = trained(registry)
    gitlab.failing_uploads = 1
    with pytest.raises(requests.HTTPError, match="403"):
        register(registry, run, model_dir)
    assert register(registry, run, model_dir).version == "1.0.0"
    assert [v.version for v in gitlab.ml.versions] == ["1.0.0"]
    assert "model.tar.gz" in gitlab.version_files("fraud", "1.0.0")
    assert gitlab.ml.candidate(eid=run).metadata["mlops.registered_version"] == "1.0.0"


def test_the_ci_job_tag_goes_only_to_the_ci_gitlab(gitlab):
    """GitLab looks gitlab.CI_JOB_ID up among its own jobs: an unknown one is a 500 after the
    run was created (MLflow would retry it, leaving a run each time)."""
    gitlab.ml.jobs.add("77")
    local = GitLabRegistry(gitlab.url, job_id="77", server_url="http://127.0.0.1")
    run = local.start_run("exp", "r", {})
    assert gitlab.ml.candidate(eid=run).ci_build == "77"
    other = GitLabRegistry(gitlab.url, job_id="31337", server_url="https://gitlab.example.com")
    assert "gitlab.CI_JOB_ID" not in gitlab.ml.candidate(
        eid=other.start_run("exp", "r", {})).metadata
    before = len(gitlab.ml.candidates)
    with pytest.raises(MlflowException, match="500"):
        MlflowClient(gitlab.url).create_run(local.experiment_id("exp"),
                                            tags={"gitlab.CI_JOB_ID": "31337"})
    assert len(gitlab.ml.candidates) == before + 1


def test_no_path_depends_on_searching_registered_models(gitlab):
    """MLflow 3 adds a prompt clause to every search filter; GitLab parses `name=` only."""
    client = MlflowClient(gitlab.url, gitlab.url)
    client.create_registered_model("fraud")
    with pytest.raises(RestException, match="Invalid attribute key"):
        client.search_registered_models()
    assert client.search_registered_models("name='fraud'") == []
    if gitlab.mode == "older":  # raw version rows: MLflow cannot read the model any more
        client.create_model_version("fraud", source="")
        with pytest.raises(ParseError, match="model_id"):
            client.get_registered_model("fraud")
