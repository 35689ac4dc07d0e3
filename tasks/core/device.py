"""Device selection: CUDA when this XGBoost build has it and a GPU is visible, CPU otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable

from tasks.core.errors import ConfigError


def cuda_available() -> bool:
    """Cheap checks first: importing XGBoost costs ~2 s, so it is asked last."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return False
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if out.returncode != 0 or "GPU" not in out.stdout:
        return False
    import xgboost as xgb

    return bool(xgb.build_info().get("USE_CUDA"))


def select_device(preference: str, probe: Callable[[], bool] = cuda_available) -> str:
    """`auto` picks CUDA when present and CPU otherwise; an explicit `cuda` must be satisfiable."""
    if preference == "cpu":
        return "cpu"
    has_cuda = probe()
    if preference == "cuda" and not has_cuda:
        raise ConfigError("MLOPS_DEVICE=cuda but no CUDA device (or CUDA-enabled XGBoost) is present")
    return "cuda" if has_cuda else "cpu"
