"""Measured budgets, each a ratio of two commands timed side by side in one run.

  1. orchestration + tracking overhead: `mlops train` vs the same stage functions in a plain
     script (benchmarks/plain_pipeline.py), fixed small trial count.   goal <= 1.2x
  2. cached re-run vs cold run of `mlops train fraud` as shipped (unchanged data, config,
     code): the CLI's up-to-date check, and for reference the flow's own reuse path
     (`--force`: Prefect starts, data is loaded and validated, the version is found). goal <= 0.1x

Both are whole processes (what a user waits for) and are alternated, so machine noise hits
both sides alike; medians are reported. Absolute times on a shared 2-core box mean little:
read the ratios.

Usage: python benchmarks/run.py [--repeats N] [--trials N] [--rows N]
"""

from __future__ import annotations

import argparse
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


def bench_config(tmp: Path, trials: int | None, rows: int | None) -> Path:
    text = (REPO / "configs" / "models" / "fraud.yaml").read_text()
    if trials:
        text = text.replace("n_trials: 20", f"n_trials: {trials}")
    if rows:
        text = text.replace("rows: 50000", f"rows: {rows}")
    path = tmp / "configs" / "fraud.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


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
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as tmpdir:
        tmp = Path(tmpdir)
        small = bench_config(tmp / "small", args.trials, None)
        shipped = bench_config(tmp / "shipped", None, None)
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("MLOPS_", "MLFLOW_", "PREFECT_"))}
        base.update(MLOPS_DEVICE="cpu", PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        mlops = [str(BIN / "mlops"), "train", "fraud"]
        plain = [sys.executable, "benchmarks/plain_pipeline.py", str(small)]

        def env(config: Path, home: str) -> dict[str, str]:
            return {**base, "MLOPS_CONFIG_DIR": str(config.parent), "MLOPS_HOME": home}

        print(f"warming up (imports, Prefect database) ... {args.repeats} repeats", flush=True)
        timed(mlops, env(small, str(tmp / "warmup")))

        flow_small, plain_runs = [], []
        print(f"budget 1: fraud, {args.trials} trials", flush=True)
        for i in range(args.repeats):
            flow_small.append(timed(mlops, env(small, str(tmp / f"small{i}"))))
            plain_runs.append(timed(plain, base))
            print(f"  round {i + 1}: mlops {flow_small[-1]:.1f}s, plain {plain_runs[-1]:.1f}s",
                  flush=True)

        cold, cached, forced = [], [], []
        print("budget 2: fraud as shipped", flush=True)
        for i in range(args.repeats):
            home = str(tmp / f"shipped{i}")
            cold.append(timed(mlops, env(shipped, home)))
            cached.append(timed(mlops, env(shipped, home)))
            forced.append(timed([*mlops, "--force"], env(shipped, home)))
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
    print(f"\nraw timings: {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
