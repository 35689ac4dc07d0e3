"""Device selection: CUDA when this XGBoost build has it and a GPU is visible, CPU otherwise."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable

from tasks.core.errors import ConfigError


def cuda_available(visible_devices: str | None = None) -> bool:
    """Cheap checks first (CUDA_VISIBLE_DEVICES, nvidia-smi); importing XGBoost costs ~2 s, so
    it is asked last."""
    if visible_devices in ("", "-1"):
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


def select_device(preference: str, visible_devices: str | None = None,
                  probe: Callable[[], bool] | None = None) -> str:
    """`auto` picks CUDA when present and CPU otherwise; an explicit `cuda` must be satisfiable."""
    if preference == "cpu":
        return "cpu"
    has_cuda = probe() if probe else cuda_available(visible_devices)
    if preference == "cuda" and not has_cuda:
        raise ConfigError("MLOPS_DEVICE=cuda but no CUDA device (or CUDA-enabled XGBoost) is present")
    return "cuda" if has_cuda else "cpu"
