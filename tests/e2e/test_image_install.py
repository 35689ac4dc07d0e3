"""No Docker engine runs here: the Dockerfile's own install steps are replayed in a venv instead."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.e2e.conftest import REPO

pytestmark = pytest.mark.slow
UV = REPO / ".uv" / "bin" / "uv"


def dockerfile_steps() -> tuple[list[str], list[str]]:
    """What the Dockerfile COPYs from the build context, and its `uv sync` commands."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    copied = []
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            copied += line.split()[1:-1]
    syncs = [m.group(0).split(" --python")[0] for m in re.finditer(r"uv sync [^&\n]+", text)]
    group = re.search(r"^ARG XGBOOST=(\S+)$", text, re.MULTILINE).group(1)  # the default image
    return copied, [" ".join(s.replace('"${XGBOOST}"', group).split()) for s in syncs]


def test_dockerfile_install_steps_in_a_venv(tmp_path):
    copied, syncs = dockerfile_steps()
    assert syncs == ["uv sync --frozen --no-default-groups --group gpu --no-install-project",
                     "uv sync --frozen --no-default-groups --group gpu"]
    context = tmp_path / "context"
    context.mkdir()
    for name in copied:
        source = REPO / name
        assert source.exists(), f"Dockerfile copies {name}, which the repository lacks"
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, context / name)
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(tmp_path / "venv"),
           "UV_PYTHON_DOWNLOADS": "never"}
    for command in syncs:
        # the image compiles bytecode (Dockerfile: UV_COMPILE_BYTECODE=1); the replay need not:
        # compiling the whole stack is over a minute of CPU on this 2-core machine
        step = subprocess.run([str(UV), *command.split()[1:], "--python", "python3",
                               "--no-compile-bytecode"],
                              cwd=context, env=env, capture_output=True, text=True, timeout=600)
        assert step.returncode == 0, step.stderr[-2000:]
    venv = tmp_path / "venv" / "bin"
    help_ = subprocess.run([str(venv / "mlops"), "--help"], capture_output=True, text=True,
                           cwd=context, timeout=120)
    assert help_.returncode == 0 and "check-deployments" in help_.stdout
    imports = subprocess.run([str(venv / "python"), "-c",
                              "import flows.training, deployments.steps, prefect_docker, xgboost"],
                             capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert imports.returncode == 0, imports.stderr[-2000:]
    assert not (venv / "pytest").exists(), "dev dependencies must stay out of the image"
