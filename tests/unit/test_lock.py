"""One resolution for every supported Python: a laptop on 3.11 and CI on 3.12 install the same
numerical stack, so they train the same booster from the same data."""

from __future__ import annotations

import tomllib
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# what decides the trained model's bytes and its scores
NUMERICAL_STACK = ("xgboost", "numpy", "pandas", "scikit-learn", "pyarrow")


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
    found = forks((ROOT / "uv.lock").read_text())
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
