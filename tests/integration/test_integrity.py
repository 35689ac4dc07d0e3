"""Every file of a registered version is verified before it loads: feature_spec.json or the
model-from-code loader tampered with in the store (or a file added or removed) is refused by
every load (scoring, monitoring, the gate's champion re-score, staging, post-deploy), exit 1
naming the file; a version without a manifest loads with a warning, and `require_manifest` (for
promotion) refuses it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.training import training_pipeline
from mlops.cli import app
from tasks.contracts.training import FeatureSpec
from tasks.core import integrity
from tasks.core.config import load_config
from tasks.core.errors import IntegrityError
from tasks.core.settings import Settings
from tasks.release.production import post_deploy_checks
from tasks.release.staging import deploy_staging
from tasks.training.gate import rescore_champion
from tasks.training.synthetic import generate_claims
from tests.conftest import config_yaml, crown, release_parts, trail_here, without_audit_key

runner = CliRunner()
NAME = "sealed"
EVERY_FILE = {"MLmodel", "pyfunc_model.py", "artifacts/feature_spec.json", "artifacts/model.ubj",
              "artifacts/predictions.py", "input_example.json", "serving_input_example.json",
              "requirements.txt", "conda.yaml", "python_env.yaml", "model_card.md",
              "reference_profile.json"}


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    """One trained, registered version (v1) that is also the champion; the store's copy of its
    model folder, which tests tamper with and restore."""
    from tasks.adapters.registries import open_registry

    root = tmp_path_factory.mktemp("integrity")
    (root / "configs").mkdir()
    (root / "configs" / f"{NAME}.yaml").write_text(config_yaml(name=NAME, rows=1500))
    generate_claims(600, seed=5).to_parquet(root / "batch.parquet")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_HOME", str(root / "state"))
        mp.setenv("MLOPS_CONFIG_DIR", str(root / "configs"))
        mp.setenv("MLOPS_DEVICE", "cpu")
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        version = training_pipeline(NAME).version
        registry = open_registry(Settings.from_env())
        crown(registry, NAME, version)
        ref = registry.require_version(NAME, version)
        store = Path(registry.client.get_run(ref.run_id).info.artifact_uri
                     .removeprefix("file://")) / "model"
        (root / "spec.json").write_bytes((store / "artifacts" / "feature_spec.json").read_bytes())
        yield registry, version, store, root


@pytest.fixture
def restore(sealed):
    """Put the store's files back as they were after each test."""
    _, _, store, _ = sealed
    saved = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    yield store
    for path in [p for p in store.rglob("*") if p.is_file() and p not in saved]:
        path.unlink()
    for path, data in saved.items():
        path.write_bytes(data)


def test_every_file_is_in_the_manifest_and_its_digest_is_kept_twice(sealed, tmp_path):
    registry, version, _, _ = sealed
    ref = registry.require_version(NAME, version)
    digest = ref.tags[integrity.TAG]
    assert registry.run_params(ref.run_id)[integrity.TAG] == digest  # immutable copy
    assert registry.require_manifest(NAME, version) == digest
    local = registry.download_version(NAME, version, tmp_path, require_manifest=True)
    assert local.manifest_sha256 == digest and local.path == tmp_path / "model"
    listed = json.loads((local.path / integrity.MANIFEST).read_bytes())["files"]
    assert {name for name, _, _ in listed} == EVERY_FILE
    assert not (local.path / "registered_model_meta").exists()


def swap_classes(store: Path) -> str:
    """feature_spec.json with its class order swapped: fraud labels inverted, booster intact."""
    spec = store / "artifacts" / "feature_spec.json"
    body = json.loads(spec.read_text())
    body["classes"] = body["classes"][::-1]
    spec.write_text(json.dumps(body, indent=2))
    return "artifacts/feature_spec.json was changed"


def patch_loader(store: Path) -> str:
    loader = store / "pyfunc_model.py"
    loader.write_text(loader.read_text() + "\nimport os  # runs on every load\n")
    return "pyfunc_model.py was changed"


def add_file(store: Path) -> str:
    (store / "artifacts" / "sitecustomize.py").write_text("print('hello')\n")
    return "artifacts/sitecustomize.py was added"


def remove_file(store: Path) -> str:
    (store / "reference_profile.json").unlink()
    return "reference_profile.json is missing"


def reseal(store: Path) -> str:
    """Change the spec and write a fresh manifest next to it: the registered digest catches it."""
    swap_classes(store)
    integrity.seal(store)
    return f"{integrity.MANIFEST} was replaced"


def assert_refused(result, named: str) -> None:
    assert result.exit_code == 1, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {NAME} v1 failed its integrity check: {named}"), line


@pytest.mark.parametrize("tamper", [swap_classes, patch_loader])
def test_a_tampered_spec_or_loader_is_refused_by_every_load(sealed, restore, tamper):
    registry, version, _, root = sealed
    named = tamper(restore)
    out = root / "scored.parquet"
    assert_refused(runner.invoke(app, ["score", NAME, "--input", str(root / "batch.parquet"),
                                       "--output", str(out)]), named)
    assert not out.exists()
    assert_refused(runner.invoke(app, ["monitor", NAME, "--input",
                                       str(root / "batch.parquet")]), named)

    cfg = load_config(NAME, Settings.from_env().config_dir)
    test = generate_claims(300, seed=6)
    spec = FeatureSpec.model_validate(json.loads(
        (root / "spec.json").read_text()))  # the untampered spec, from before
    with pytest.raises(IntegrityError, match=named):  # the gate's champion re-score
        rescore_champion(registry, cfg, test, spec)
    staged_before = registry.alias_version(NAME, "staging")
    with pytest.raises(IntegrityError, match=named):
        deploy_staging(registry, cfg, version, "ci", server_factory=pytest.fail, **release_parts())
    assert registry.alias_version(NAME, "staging") == staged_before
    with pytest.raises(IntegrityError, match=named):
        post_deploy_checks(registry, cfg, version)


@pytest.mark.parametrize("tamper", [add_file, remove_file, reseal])
def test_added_missing_files_and_a_rewritten_manifest_are_refused(sealed, restore, tamper):
    _, _, _, root = sealed
    named = tamper(restore)
    assert_refused(runner.invoke(app, ["score", NAME, "--input", str(root / "batch.parquet"),
                                       "--output", str(root / "x.parquet")]), named)


def staged(registry, version: str) -> None:
    """What a passed staging leaves: its record (with the digest) and the alias."""
    from tasks.adapters.audit_trail import event

    trail_here(registry, NAME).write(event("staged", "staging", None, version, "pipeline",
                                           alias="staging",
                                           digest=registry.require_manifest(NAME, version)))
    registry.move_alias(NAME, "staging", version)


def test_a_promotion_of_a_tampered_version_rolls_back(sealed, restore):
    """Staged intact, tampered afterwards in the store: the post-deploy checks catch it."""
    registry, version, _, _ = sealed
    staged(registry, version)
    from tasks.contracts.release import Identity
    from tasks.core.config import load_config
    from tasks.core.errors import DeployError
    from tasks.release.production import move_checked, open_trail

    named = swap_classes(restore)
    crown(registry, NAME, None)
    cfg = load_config(NAME, Settings.from_env().config_dir)
    parts = release_parts()
    trail = open_trail(registry, cfg, parts["settings"], parts["key"])
    try:  # the move itself (v1 was champion before, so `mlops promote` would send it to rollback)
        with trail.locked(), pytest.raises(DeployError) as refused:
            move_checked(registry, cfg, trail, "promotion", None, version,
                         Identity(username="alice"), "", None, None)
        assert "failed its post-deploy checks" in str(refused.value) and named in str(
            refused.value)
        assert registry.alias_version(NAME, "champion") is None
        assert trail.events()[-1]["action"] == "rolled-back"
    finally:
        crown(registry, NAME, version)


def test_an_altered_manifest_tag_is_caught_by_the_training_runs_param(sealed, tmp_path):
    registry, version, _, _ = sealed
    digest = registry.require_version(NAME, version).tags[integrity.TAG]
    registry.client.set_model_version_tag(NAME, version, integrity.TAG, "0" * 64)
    try:
        with pytest.raises(IntegrityError, match="tag differs from the one its training run"):
            registry.download_version(NAME, version, tmp_path / "a")
        registry.client.delete_model_version_tag(NAME, version, integrity.TAG)
        # without the tag, the run's param still says what to verify against
        assert registry.download_version(NAME, version, tmp_path / "b").manifest_sha256 == digest
    finally:
        registry.client.set_model_version_tag(NAME, version, integrity.TAG, digest)


def test_a_version_without_a_manifest_loads_with_a_warning_and_is_refused_for_promotion(
        sealed, tmp_path, caplog):
    """A version registered before manifests existed (same files, no manifest, no digest)."""
    registry, version, store, _ = sealed
    ref = registry.require_version(NAME, version)
    old = tmp_path / "old" / "model"
    for path in store.rglob("*"):
        if path.is_file() and path.name != integrity.MANIFEST:
            target = old / path.relative_to(store)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    run_id = registry.start_run(NAME, "before-manifests", {})
    registry.client.log_artifacts(run_id, str(old), "model")
    source = f"{registry.client.get_run(run_id).info.artifact_uri}/model"
    legacy = registry.client.create_model_version(
        NAME, source=source, run_id=run_id,
        tags={k: v for k, v in ref.tags.items() if k != integrity.TAG} | {"run_key": "old"})
    legacy_version = str(legacy.version)
    with caplog.at_level(logging.WARNING, logger="mlops.registry"):
        local = registry.download_version(NAME, legacy_version, tmp_path / "dl")
    assert local.manifest_sha256 is None
    assert f"{NAME} v{legacy_version} has no integrity manifest" in caplog.text
    with pytest.raises(IntegrityError, match="cannot be promoted"):
        registry.download_version(NAME, legacy_version, tmp_path / "dl2", require_manifest=True)
    with pytest.raises(IntegrityError, match=f"v{legacy_version} has no integrity manifest .*"
                                             "cannot be promoted"):
        registry.require_manifest(NAME, legacy_version)  # what the release steps call
    # and a manifest left in a version whose digest was removed is not taken for an old one
    (old / integrity.MANIFEST).write_text("{}")
    registry.client.log_artifact(run_id, str(old / integrity.MANIFEST), "model")
    with pytest.raises(IntegrityError, match="holds a manifest but has no registered"):
        registry.download_version(NAME, legacy_version, tmp_path / "dl3")


def test_a_promotion_without_the_audit_key_moves_nothing(sealed, monkeypatch):
    """No key, no production change: refused before the alias moves, and says what to set."""

    registry, version, _, _ = sealed
    staged(registry, version)
    registry.move_alias(NAME, "champion", None)
    before = len(trail_here(registry, NAME).records())
    without_audit_key(monkeypatch)
    try:
        result = runner.invoke(app, ["promote", NAME, version, "--as", "alice"])
        assert result.exit_code == 2, result.output
        [line] = result.stderr.strip().splitlines()
        assert "without MLOPS_AUDIT_KEY" in line, line
        assert registry.alias_version(NAME, "champion") is None
        assert len(trail_here(registry, NAME, key=None).records()) == before
    finally:
        registry.move_alias(NAME, "champion", version)
