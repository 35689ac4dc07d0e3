"""How big and how slow an install is with each XGBoost build: the default `cpu` group
(xgboost-cpu) against the GPU image's `gpu` group (CUDA XGBoost with NCCL), each synced from
uv.lock into a fresh environment, side by side in one run. The uv cache is shared, so the
times are for a warm cache (the second and later installs on a machine).

    .venv/bin/python benchmarks/install_size.py
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UV = ROOT / ".uv" / "bin" / "uv"
VARIANTS = {
    "cpu (default)": ["--no-dev"],
    "gpu (image)": ["--no-default-groups", "--group", "gpu"],
}


def size_mb(path: Path) -> float:
    """Bytes on disk of every file under path, a hard-linked file counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total / 2**20


def sync(args: list[str], env_dir: Path) -> float:
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(env_dir), "UV_PYTHON_DOWNLOADS": "never"}
    started = time.perf_counter()
    subprocess.run([str(UV), "sync", "--frozen", "--quiet", "--python", "python3", *args],
                   cwd=ROOT, env=env, check=True, timeout=1800)
    return time.perf_counter() - started


def main() -> None:
    print(f"load average before: {os.getloadavg()}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="mlops-install-") as tmp:
        for label, args in VARIANTS.items():
            env_dir = Path(tmp) / label.split()[0]
            seconds = sync(args, env_dir)
            results[label] = (seconds, size_mb(env_dir))
    for label, (seconds, mb) in results.items():
        print(f"{label:<14} {mb:8.0f} MB  {seconds:6.1f} s")
    (cpu_s, cpu_mb), (gpu_s, gpu_mb) = results.values()
    print(f"gpu/cpu: size x{gpu_mb / cpu_mb:.2f} (+{gpu_mb - cpu_mb:.0f} MB), "
          f"time x{gpu_s / cpu_s:.2f}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
