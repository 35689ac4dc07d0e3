"""Measured budgets, each a ratio of two commands timed side by side in one run.

  1. orchestration + tracking overhead: `mlops train` vs the same stage functions in a plain
     script (benchmarks/plain_pipeline.py), fixed small trial count.   goal <= 1.2x
  2. cached re-run vs cold run of `mlops train fraud` as shipped (unchanged data, config,
     code): the CLI's up-to-date check, and for reference the flow's own reuse path
     (`--force`: Prefect starts, data is loaded and validated, the version is found). goal <= 0.1x

Both are whole processes (what a user waits for) and are alternated, so machine noise hits
both sides alike; medians are reported. Absolute times on a shared 2-core box mean little:
read the ratios. Every round trains on new data (another generator seed), so each `mlops`
cold run really trains, against a tracking store that already exists, as a user's would.

With --prefect-server, every `mlops` command talks to one `prefect server start` that the
benchmark starts first (the production setup) instead of starting a temporary server of its own.

Usage: python benchmarks/run.py [--repeats N] [--trials N] [--prefect-server]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RESULTS = REPO / "benchmarks" / "results"


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}\n"
                 f"{proc.stderr[-2000:]}")
    return elapsed


def bench_config(tmp: Path, trials: int | None, seed: int) -> Path:
    text = (REPO / "configs" / "models" / "fraud.yaml").read_text()
    if trials:
        text = text.replace("n_trials: 20", f"n_trials: {trials}")
    text = text.replace("rows: 50000", f"rows: 50000\n  seed: {seed}")
    path = tmp / "configs" / "fraud.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@contextlib.contextmanager
def prefect_server(tmp: Path, base: dict[str, str]):
    """A long-running Prefect server on loopback (SQLite in tmp), as production would have."""
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**base, "PREFECT_HOME": str(tmp / "prefect-home"), "PREFECT_UI_ENABLED": "false",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    with open(tmp / "prefect-server.log", "wb") as log:
        proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                                 "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                                env=env)
    api = f"http://127.0.0.1:{port}/api"
    try:
        for _ in range(600):
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{api}/health", timeout=2):
                break
            time.sleep(0.3)
        yield api
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def summarize(name: str, a: list[float], b: list[float], label_a: str, label_b: str,
              goal: float) -> dict:
    ma, mb = statistics.median(a), statistics.median(b)
    ratio = ma / mb
    verdict = "meets" if ratio <= goal else "MISSES"
    print(f"\n{name}\n  {label_a:<34} median {ma:7.2f}s  (min {min(a):.2f}, max {max(a):.2f})"
          f"\n  {label_b:<34} median {mb:7.2f}s  (min {min(b):.2f}, max {max(b):.2f})"
          f"\n  ratio {ratio:.3f}x  goal <= {goal}x  -> {verdict}")
    return {"name": name, label_a: a, label_b: b, "ratio": ratio, "goal": goal}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="runs per side (default 3)")
    parser.add_argument("--trials", type=int, default=5, help="Optuna trials (default 5)")
    parser.add_argument("--prefect-server", action="store_true",
                        help="run every mlops command against one long-running Prefect server")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as tmpdir, \
            contextlib.ExitStack() as stack:
        tmp = Path(tmpdir)
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("MLOPS_", "MLFLOW_", "PREFECT_"))}
        base.update(MLOPS_DEVICE="cpu", PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                    MLOPS_HOME=str(tmp / "home"))
        if args.prefect_server:
            base["PREFECT_API_URL"] = stack.enter_context(prefect_server(tmp, base))
            print(f"using a long-running Prefect server at {base['PREFECT_API_URL']}")
        mlops = [str(BIN / "mlops"), "train", "fraud"]

        def env(config: Path) -> dict[str, str]:
            return {**base, "MLOPS_CONFIG_DIR": str(config.parent)}

        print(f"warming up (imports, Prefect and MLflow databases) ... {args.repeats} repeats",
              flush=True)
        timed(mlops, env(bench_config(tmp / "warmup", args.trials, 1)))

        flow_small, plain_runs = [], []
        print(f"budget 1: fraud, {args.trials} trials", flush=True)
        for i in range(args.repeats):
            small = bench_config(tmp / f"small{i}", args.trials, 100 + i)
            flow_small.append(timed(mlops, env(small)))
            plain_runs.append(timed([sys.executable, "benchmarks/plain_pipeline.py", str(small)],
                                    base))
            print(f"  round {i + 1}: mlops {flow_small[-1]:.1f}s, plain {plain_runs[-1]:.1f}s",
                  flush=True)

        cold, cached, forced = [], [], []
        print("budget 2: fraud as shipped (20 trials)", flush=True)
        for i in range(args.repeats):
            shipped = bench_config(tmp / f"shipped{i}", None, 200 + i)
            cold.append(timed(mlops, env(shipped)))
            cached.append(timed(mlops, env(shipped)))
            forced.append(timed([*mlops, "--force"], env(shipped)))
            print(f"  round {i + 1}: cold {cold[-1]:.1f}s, cached {cached[-1]:.1f}s, "
                  f"cached through the flow {forced[-1]:.1f}s", flush=True)

    results = [
        summarize("1. orchestration + tracking overhead", flow_small, plain_runs,
                  "mlops train (Prefect + MLflow)", "plain script", 1.2),
        summarize("2. cached re-run vs cold run", cached, cold,
                  "mlops train, cached", "mlops train, cold", 0.1),
        summarize("2b. cached re-run through the flow (--force) vs cold run", forced, cold,
                  "mlops train --force, cached", "mlops train, cold", 0.1),
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    mode = "one long-running Prefect server" if args.prefect_server else \
        "a temporary Prefect server per command (laptop mode)"
    print(f"mode: {mode}")
    print(f"\nraw timings: {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
