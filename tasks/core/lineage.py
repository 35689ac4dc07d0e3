"""Lineage: where a model came from (commit, CI, flow run, data, config, code), never secrets."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
_CODE_ROOTS = ("tasks", "flows")
_CI_TAGS = {
    "CI_PIPELINE_ID": "ci_pipeline_id",
    "CI_PIPELINE_URL": "ci_pipeline_url",
    "CI_JOB_ID": "ci_job_id",
    "CI_JOB_URL": "ci_job_url",
    "CI_MERGE_REQUEST_IID": "ci_merge_request_iid",
    "CI_COMMIT_REF_NAME": "ci_commit_ref",
    "CI_PROJECT_PATH": "ci_project_path",
}


def code_hash() -> str:
    """Hash of the pipeline's own source, so a code change invalidates cached results."""
    root = PROJECT_ROOT
    digest = hashlib.sha256()
    for pkg in _CODE_ROOTS:
        for path in sorted((root / pkg).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


# what a rebuild's result can depend on besides data, config, code and seed
_ENV_PACKAGES = ("xgboost", "numpy", "pandas", "scikit-learn", "pyarrow", "optuna")
# the CPU-only build installs the same module (and trains the same booster) under another name
_DISTRIBUTIONS = {"xgboost": ("xgboost", "xgboost-cpu")}


def environment() -> str:
    """`key=value …`: Python, the packages training depends on, the CPU count (XGBoost's
    threads) and the machine, kept with every version so a rebuild can say what differs."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    parts = {"python": platform.python_version(), "machine": platform.machine(),
             "cpus": str(os.cpu_count() or 1)}
    for name in _ENV_PACKAGES:
        parts[name] = "absent"
        for dist in _DISTRIBUTIONS.get(name, (name,)):
            try:
                parts[name] = version(dist)
                break
            except PackageNotFoundError:
                continue
    return " ".join(f"{k}={v}" for k, v in parts.items())


def run_key(data_fingerprint: str, config_hash: str, code: str, device: str) -> str:
    return hashlib.sha256(f"{data_fingerprint}|{config_hash}|{code}|{device}".encode()).hexdigest()


def git_commit(ci: Mapping[str, str] | None = None) -> str | None:
    """The CI pipeline's commit, else the checkout's HEAD."""
    if ci and ci.get("CI_COMMIT_SHA"):
        return ci["CI_COMMIT_SHA"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=PROJECT_ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def commit_author(ci: Mapping[str, str] | None = None) -> str | None:
    """`Name <email>` of the commit's author: the CI pipeline's, else the checkout's HEAD."""
    if ci and ci.get("CI_COMMIT_AUTHOR"):
        return ci["CI_COMMIT_AUTHOR"]
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%an <%ae>"], capture_output=True,
                             text=True, timeout=5, cwd=PROJECT_ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def git_user() -> str | None:
    """The checkout's git identity (the local part of user.email), when nothing else names
    who built a version: without any, four eyes cannot be checked and production refuses."""
    try:
        out = subprocess.run(["git", "config", "user.email"], capture_output=True, text=True,
                             timeout=5, cwd=PROJECT_ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().split("@")[0] or None if out.returncode == 0 else None


def lineage_tags(data_fingerprint: str, config_hash: str, code: str, key: str,
                 flow_run_id: str | None, ci: Mapping[str, str], image: str | None = None,
                 user: str | None = None) -> dict[str, str]:
    """Tags every run and model version carries; CI values come from a fixed allow-list. Who
    built it (the pipeline's triggerer, else the local user) and who wrote its commit are kept
    for the four-eyes rule: neither may approve it."""
    tags = {
        "data_fingerprint": data_fingerprint,
        "config_hash": config_hash,
        "code_hash": code,
        "run_key": key,
        "environment": environment(),
    }
    commit = git_commit(ci)
    if commit:
        tags["git_commit"] = commit
    built_by = ci.get("GITLAB_USER_LOGIN") or user or git_user()
    if built_by:
        tags["built_by"] = built_by
    author = commit_author(ci)
    if author:
        tags["commit_author"] = author
    if flow_run_id:
        tags["prefect_flow_run_id"] = flow_run_id
    if image:
        tags["image"] = image
    for var, tag in _CI_TAGS.items():
        if ci.get(var):
            tags[tag] = ci[var]
    return tags


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
