"""Plain `prefect` commands after `mlops server start`: the profile mlops-local (the stack's
server) vs Prefect's default profile (a throw-away server per command), timed side by side in
one run, alternated, medians reported with the load average. Also the start itself (servers,
pools, two workers, profile) and the stop. Temporary MLOPS_HOME and PREFECT_HOME: the real
~/.prefect is not touched.

Usage: python benchmarks/prefect_profile.py [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - started, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PREFECT_", "MLOPS_", "MLFLOW_"))}
        env.update(MLOPS_HOME=f"{tmp}/home", PREFECT_HOME=f"{tmp}/prefect-home",
                   MLOPS_PREFECT_PORT=str(free_port()), MLOPS_MLFLOW_PORT=str(free_port()),
                   PREFECT_SERVER_ANALYTICS_ENABLED="false", COLUMNS="200")
        print(f"load average before: {os.getloadavg()}")
        start_s, _ = timed([str(BIN / "mlops"), "server", "start"], env)
        stack_s, default_s = [], []
        try:
            for _ in range(args.repeats):
                seconds, out = timed([str(BIN / "prefect"), "work-pool", "ls"], env)
                assert "cpu-runners" in out, out
                stack_s.append(seconds)
                seconds, out = timed([str(BIN / "prefect"), "work-pool", "ls"],
                                     {**env, "PREFECT_PROFILE": "ephemeral",
                                      "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"})
                default_s.append(seconds)
        finally:
            stop_s, _ = timed([str(BIN / "mlops"), "server", "stop", "--purge"], env)
        stack, default = statistics.median(stack_s), statistics.median(default_s)
        print(f"mlops server start (cold: servers, 2 pools, 2 workers, profile): {start_s:.1f} s;"
              f" stop --purge: {stop_s:.1f} s")
        print(f"prefect work-pool ls, median of {args.repeats}: profile mlops-local {stack:.2f} s"
              f", default profile (throw-away server, finds no pool) {default:.2f} s: "
              f"{stack / default:.2f}x")
        print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
