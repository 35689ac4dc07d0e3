"""One resolution for every supported Python: a laptop on 3.11 and CI on 3.12 install the same
numerical stack, so they train the same booster from the same data."""

from __future__ import annotations

import tomllib
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# what decides the trained model's bytes and its scores
NUMERICAL_STACK = ("xgboost", "numpy", "pandas", "scikit-learn", "pyarrow")
# the same module from another distribution: the CPU-only build a default install gets
OTHER_BUILDS = ("xgboost-cpu",)


def forks(lock_text: str, names: tuple[str, ...] = NUMERICAL_STACK) -> dict[str, list[str]]:
    """The named packages the lock resolves to more than one version (one per Python or
    platform), with their versions."""
    versions: dict[str, list[str]] = defaultdict(list)
    for package in tomllib.loads(lock_text).get("package", []):
        versions[package["name"]].append(package["version"])
    missing = [n for n in names if n not in versions]
    assert not missing, f"not in the lock: {missing}"
    return {n: sorted(versions[n]) for n in names if len(versions[n]) > 1}


def test_the_numerical_stack_resolves_once_for_every_python():
    found = forks((ROOT / "uv.lock").read_text(), NUMERICAL_STACK + OTHER_BUILDS)
    assert not found, (f"uv.lock forks {found}: cap them in pyproject's "
                       "[tool.uv] constraint-dependencies, or narrow requires-python")


def test_a_fork_is_found():
    """The check fails on a lock like the one before the caps (3.11 and 3.12 apart)."""
    planted = "\n".join(
        f'[[package]]\nname = "{name}"\nversion = "{version}"\n'
        for name, version in [("xgboost", "3.2.0"), ("xgboost", "3.4.1"), ("numpy", "2.4.6"),
                              ("numpy", "2.5.5"), ("pandas", "2.3.3"),
                              ("scikit-learn", "1.9.1"), ("pyarrow", "25.0.1")])
    assert forks(planted) == {"xgboost": ["3.2.0", "3.4.1"], "numpy": ["2.4.6", "2.5.5"]}


def reaching(lock: dict, name: str) -> list[str]:
    """The packages of a lock that depend on `name` (by default or through an extra)."""
    return [p["name"] for p in lock["package"] for d in p.get("dependencies", [])
            + [x for e in p.get("optional-dependencies", {}).values() for x in e]
            if d["name"] == name]


def _project(lock: dict) -> dict:
    return next(p for p in lock["package"] if p["name"] == "prefect-mlops")


def test_a_default_install_on_linux_gets_xgboost_cpu_and_no_nccl():
    """`make install` (`uv sync`: groups dev and cpu) installs xgboost-cpu (about 20 MB); the
    CUDA build and NCCL (about 700 MB) come only with the gpu group, in the GPU image."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    project = _project(lock)
    assert project["default-groups"] == ["cpu", "dev"]
    groups = project["dev-dependencies"]
    linux = [d["name"] for d in groups["cpu"] if "linux" in d.get("marker", "linux")]
    assert "xgboost-cpu" in linux and all(
        d.get("marker") == "sys_platform == 'darwin'" for d in groups["cpu"]
        if d["name"] == "xgboost")
    assert [d["name"] for d in groups["gpu"]] == ["xgboost"]
    # nothing else reaches the CUDA build: not the project, not a package (optuna-integration's
    # [xgboost] extra did)
    assert reaching(lock, "xgboost") == []
    assert reaching(lock, "nvidia-nccl-cu12") == ["xgboost"]
    assert {"cpu", "gpu"} == {c["group"] for c in lock["conflicts"][0]}


def test_the_nccl_check_finds_a_project_that_pulls_the_cuda_build():
    """The lock before this change: optuna-integration's [xgboost] extra and the project."""
    planted = {"package": [
        {"name": "prefect-mlops", "dependencies": [{"name": "xgboost"}]},
        {"name": "optuna-integration", "optional-dependencies": {"xgboost": [{"name": "xgboost"}]}}]}
    assert reaching(planted, "xgboost") == ["prefect-mlops", "optuna-integration"]
