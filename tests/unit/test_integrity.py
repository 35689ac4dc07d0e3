"""The integrity manifest of a model folder: sealed once, then any changed, missing, added or
linked file, or a replaced manifest, is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.core import integrity


@pytest.fixture
def folder(tmp_path) -> tuple[Path, str]:
    model = tmp_path / "model"
    (model / "artifacts").mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {python_function: {}}\n")
    (model / "pyfunc_model.py").write_text("def load(): return 1\n")
    (model / "artifacts" / "feature_spec.json").write_text('{"classes": ["no", "yes"]}')
    (model / "artifacts" / "model.ubj").write_bytes(b"\x00booster")
    return model, integrity.seal(model)


def test_the_manifest_lists_every_file_and_its_digest_is_returned(folder):
    model, digest = folder
    data = (model / integrity.MANIFEST).read_bytes()
    assert integrity.digest(data) == digest
    listed = {name: size for name, size, _ in json.loads(data)["files"]}
    assert listed == {"MLmodel": 31, "pyfunc_model.py": 21, "artifacts/feature_spec.json": 26,
                      "artifacts/model.ubj": 8}
    assert integrity.problems(model, digest) == []
    assert integrity.failure("m v1", model, digest) is None


def test_sealing_twice_gives_the_same_digest(folder):
    model, digest = folder
    assert integrity.seal(model) == digest  # the manifest never lists itself


@pytest.mark.parametrize("name", ["artifacts/feature_spec.json", "pyfunc_model.py", "MLmodel"])
def test_a_changed_file_is_named(folder, name):
    model, digest = folder
    path = model / name
    path.write_bytes(path.read_bytes().replace(b"o", b"0", 1))  # same size, other bytes
    [problem] = integrity.problems(model, digest)
    assert problem.startswith(f"{name} was changed (SHA-256 ")
    message = integrity.failure("fraud v3", model, digest)
    assert message.startswith(f"fraud v3 failed its integrity check: {name} was changed")
    assert "refusing to load it" in message and "\n" not in message


def test_missing_and_added_files_are_named(folder):
    model, digest = folder
    (model / "pyfunc_model.py").unlink()
    (model / "artifacts" / "extra.py").write_text("import os\n")
    assert integrity.problems(model, digest) == ["artifacts/extra.py was added",
                                                 "pyfunc_model.py is missing"]


def test_a_rewritten_manifest_does_not_match_the_registered_digest(folder):
    model, digest = folder
    (model / "artifacts" / "feature_spec.json").write_text('{"classes": ["yes", "no"]}')
    integrity.seal(model)  # the attacker re-seals the folder; the registry kept the old digest
    [problem] = integrity.problems(model, digest)
    assert problem.startswith(f"{integrity.MANIFEST} was replaced")


def test_a_missing_or_unreadable_manifest_is_refused(folder):
    model, digest = folder
    (model / integrity.MANIFEST).write_bytes(b"not json")
    assert integrity.problems(model, integrity.digest(b"not json")) == [
        f"{integrity.MANIFEST} is unreadable"]
    (model / integrity.MANIFEST).unlink()
    assert integrity.problems(model, digest) == [f"{integrity.MANIFEST} is missing"]


def test_links_are_refused_when_sealing_and_when_checking(folder, tmp_path):
    model, digest = folder
    outside = tmp_path / "outside.py"
    outside.write_text("print('elsewhere')\n")
    (model / "pyfunc_model.py").unlink()
    (model / "pyfunc_model.py").symlink_to(outside)
    assert integrity.problems(model, digest) == ["pyfunc_model.py is a link"]
    with pytest.raises(ValueError, match="links"):
        integrity.seal(model)


def test_a_version_from_before_manifests_is_told_apart_from_a_removed_tag(folder, tmp_path):
    model, _ = folder
    assert "holds a manifest but has no registered manifest_sha256" in integrity.failure(
        "fraud v3", model, None)
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "MLmodel").write_text("x")
    assert integrity.failure("fraud v1", legacy, None) is None  # the caller reports it
    assert integrity.unsealed("fraud v1") == (
        "fraud v1 has no integrity manifest (registered before manifests)")


def test_a_version_whose_training_run_is_gone_is_refused_not_trusted_on_its_tag():
    """Issue 21: the manifest check was skipped silently once the training run was gone (its
    param is what a rewritten tag is checked against)."""
    from mlflow.exceptions import MlflowException

    from tasks.adapters.mlflow_registry import Registry
    from tasks.adapters.model_version import ModelVersionRef
    from tasks.core.errors import IntegrityError

    class Gone:
        def run_params(self, run_id: str) -> dict[str, str]:
            raise MlflowException(f"Run '{run_id}' not found")

    ref = ModelVersionRef(name="m", version="3", run_id="r1", source="",
                          tags={"manifest_sha256": "a" * 64})
    with pytest.raises(IntegrityError, match="training run that recorded its manifest_sha256 "
                                             "is gone; refusing it"):
        Registry.manifest_digest(Gone(), ref)
