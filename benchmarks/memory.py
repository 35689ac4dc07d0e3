"""Peak memory of `mlops train` on large tables, the streaming path against the in-memory one,
measured side by side in one run (each training in its own process; `VmHWM` read in the child).

  1. 1M and 4M rows of generated claims (one Parquet file each), `training.streaming: false`
     (the whole table in pandas) vs `true` (Arrow batches, QuantileDMatrix from a DataIter).
     goals: streaming peak at 4M <= 0.35x the in-memory peak at 4M;
            streaming peak at 4M <= 1.3x its own peak at 1M
  2. external memory: the 4M table with `training.memory_budget` a third of its size
     (uncompressed), so pages go to disk.        goal: peak <= budget + 300 MB, where "peak"
     is VmHWM above the libraries (the process's VmHWM once XGBoost, scikit-learn, Optuna,
     MLflow and matplotlib are imported: code, not data) and, second, the data's share: VmHWM
     minus the VmHWM of the same external-memory training on a --fixed-rows table (what any
     training costs: the libraries, Prefect's and MLflow's clients running, the SHAP sample, a
     batch). Also printed: VmHWM absolute and above the first imports (flows.training). Time
     vs the in-core compressed streaming path on the same table.
  3. quality: the test ROC AUC of both paths on the same split (`training.split: hash` for
     the in-memory side).                         goal: within 0.002

Tuning is cut to --trials trials of at most --rounds rounds: the memory is the data's, not the
search's. Read the ratios, not the seconds: this is a shared 2-core machine (the load average
is printed before and after).

With --crossover N [N ...] it runs only the in-memory and the streaming path at each size
(time and peak), to place `training.streaming_above`.

Usage: nice -n 10 python benchmarks/memory.py [--rows 1000000 4000000] [--trials 1]
                                            [--rounds 60] [--fixed-rows 20000]
       nice -n 10 python benchmarks/memory.py --crossover 20000 100000 300000 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
MB = 2**20


def high_water_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(config: str, out: str) -> None:
    """`mlops train <config> --force` in this process; its own peak written to `out`."""
    import flows.training  # noqa: F401 - what every training imports, counted as the baseline
    from mlops.cli import app

    baseline = high_water_mb()
    libraries_mb = libraries_loaded()
    began = time.perf_counter()
    code = 0
    try:
        app(["train", config, "--force"], standalone_mode=False)
    except SystemExit as exc:
        code = exc.code or 0
    Path(out).write_text(json.dumps({"peak_mb": high_water_mb(), "after_imports_mb": baseline,
                                     "after_libraries_mb": libraries_mb,
                                     "seconds": time.perf_counter() - began, "code": code}))


def libraries_loaded() -> float:
    """VmHWM once every library a training loads later (XGBoost, scikit-learn's metrics,
    Optuna, MLflow, matplotlib's pyplot) is imported: the code's own memory, whatever the
    data. Loaded here before the run instead of during it, so the peak is the same."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import mlflow  # noqa: F401
    import optuna  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import xgboost  # noqa: F401

    return high_water_mb()


def write_claims(path: Path, rows: int) -> Path:
    from benchmarks.scoring import write_claims as write

    return write(path, rows)


def config_text(name: str, path: Path, training: str) -> str:
    return f"""\
name: {name}
task: binary
target: is_fraud
exclude: [claim_id, damage_severity, settlement_amount]
categorical: [region, vehicle_type, claim_channel]
slices: [region]
data: {{source: file, path: '{path}'}}
training: {{seed: 42, split: hash, {training}}}
gate: {{metric: roc_auc, threshold: 0.5}}
registry:
  tags: {{classification: internal, department: claims}}
  required_tags: [classification, department]
"""


def run(work: Path, label: str, data: Path, training: str) -> dict:
    """One `mlops train` in a child process with its own MLOPS_HOME."""
    configs = work / f"configs-{label}"
    configs.mkdir(exist_ok=True)
    config = configs / f"{label}.yaml"
    config.write_text(config_text(label, data, training))
    out = work / f"{label}.json"
    env = {**os.environ, "MLOPS_HOME": str(work / f"home-{label}"),
           "MLOPS_CONFIG_DIR": str(configs),
           # the temporary Prefect server starts slowly on a loaded machine
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300"}
    env.pop("PREFECT_API_URL", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    began = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", str(config), str(out)], env=env,
                          capture_output=True, text=True, cwd=REPO)
    result = json.loads(out.read_text()) if out.exists() else {"peak_mb": float("nan")}
    result["wall_s"] = time.perf_counter() - began
    found = re.search(rf"^\s*{label}\s+\S+\s+roc_auc\s+([0-9.]+)", done.stdout, re.MULTILINE)
    result["auc"] = float(found.group(1)) if found else float("nan")
    if not found or result.get("code"):
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        print(f"  {label}: failed (code {result.get('code')}): " + " | ".join(tail))
    print(f"  {label:<16} peak {result['peak_mb']:8.0f} MB  (imports "
          f"{result.get('after_imports_mb', float('nan')):5.0f} MB)  {result['wall_s']:6.0f} s  "
          f"AUC {result['auc']:.4f}", flush=True)
    return result


def parquet_bytes(path: Path) -> int:
    from tasks.training.batches import parquet_estimate

    return parquet_estimate([str(path)])[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--rows", nargs=2, type=int, default=[1_000_000, 4_000_000])
    parser.add_argument("--trials", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--fixed-rows", type=int, default=20_000,
                        help="the small table whose external-memory peak is the fixed cost")
    parser.add_argument("--crossover", type=int, nargs="+", default=None,
                        help="only time the in-memory and streaming paths at these row counts")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the generated Parquet files are kept between runs")
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.crossover:
        crossover(args)
        return
    small, big = args.rows
    load_before = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}"
          f" ({os.cpu_count()} CPUs)")
    tune = f"n_trials: {args.trials}, max_rounds: {args.rounds}, early_stopping_rounds: 10"
    with tempfile.TemporaryDirectory(prefix="mlops-mem-") as tmp:
        work = Path(tmp)
        data_dir = args.data_dir or work
        data_dir.mkdir(parents=True, exist_ok=True)
        paths = {n: write_claims(data_dir / f"claims-{n}.parquet", n)
                 for n in (args.fixed_rows, small, big)}
        results = {}
        for n in (small, big):
            results[f"stream-{n}"] = run(work, f"stream-{n}", paths[n],
                                         f"{tune}, streaming: true")
            results[f"memory-{n}"] = run(work, f"memory-{n}", paths[n],
                                         f"{tune}, streaming: false")
        size = parquet_bytes(paths[big])
        budget = size // 3
        results["external"] = run(work, f"external-{big}", paths[big],
                                  f"{tune}, streaming: true, memory_budget: {budget}")
        results["fixed"] = run(work, f"external-{args.fixed_rows}", paths[args.fixed_rows],
                               f"{tune}, streaming: true, external_memory: true")
    load_after = os.getloadavg()
    s1, s4 = results[f"stream-{small}"], results[f"stream-{big}"]
    m1, m4 = results[f"memory-{small}"], results[f"memory-{big}"]
    ext, fixed = results["external"], results["fixed"]
    data_share = ext["peak_mb"] - fixed["peak_mb"]
    lines = [
        f"1. streaming {big:,} rows vs in-memory: {s4['peak_mb'] / m4['peak_mb']:.2f}x "
        f"({s4['peak_mb']:.0f} vs {m4['peak_mb']:.0f} MB; goal <= 0.35x)",
        f"   streaming {big:,} vs {small:,} rows: {s4['peak_mb'] / s1['peak_mb']:.2f}x "
        f"({s4['peak_mb']:.0f} vs {s1['peak_mb']:.0f} MB; goal <= 1.3x)",
        f"   in-memory {big:,} vs {small:,} rows: {m4['peak_mb'] / m1['peak_mb']:.2f}x "
        f"({m4['peak_mb']:.0f} vs {m1['peak_mb']:.0f} MB)",
        f"2. external memory, table {size / MB:.0f} MB uncompressed, budget {budget / MB:.0f} MB:"
        f" the data's share {data_share:.0f} MB (VmHWM {ext['peak_mb']:.0f} MB minus "
        f"{fixed['peak_mb']:.0f} MB of the same training on {args.fixed_rows:,} rows; goal <= "
        f"budget + 300 = {budget / MB + 300:.0f} MB); {ext['peak_mb'] - ext['after_imports_mb']:.0f}"
        f" MB above imports ({ext['after_imports_mb']:.0f} MB), "
        f"{ext['peak_mb'] - ext['after_libraries_mb']:.0f} MB above the libraries "
        f"({ext['after_libraries_mb']:.0f} MB; goal <= {budget / MB + 300:.0f} MB); time "
        f"{ext['wall_s'] / s4['wall_s']:.2f}x the in-core streaming run "
        f"({ext['wall_s']:.0f} vs {s4['wall_s']:.0f} s)",
        f"3. AUC streaming - in-memory (same hash split): {small:,} rows "
        f"{s1['auc'] - m1['auc']:+.4f}, {big:,} rows {s4['auc'] - m4['auc']:+.4f} "
        f"(goal within 0.002)",
        f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}",
    ]
    print("\n".join(lines))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps(
        {"results": results, "load_before": load_before, "load_after": load_after,
         "table_bytes": size, "budget_bytes": budget, "data_share_mb": data_share}, indent=1))


def crossover(args: argparse.Namespace) -> None:
    """In-memory vs streaming at each size: wall time and peak above imports."""
    load_before = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}"
          f" ({os.cpu_count()} CPUs)")
    tune = f"n_trials: {args.trials}, max_rounds: {args.rounds}, early_stopping_rounds: 10"
    rows = []
    with tempfile.TemporaryDirectory(prefix="mlops-cross-") as tmp:
        work = Path(tmp)
        data_dir = args.data_dir or work
        data_dir.mkdir(parents=True, exist_ok=True)
        for n in args.crossover:
            path = write_claims(data_dir / f"claims-{n}.parquet", n)
            load = os.getloadavg()[0]
            mem = run(work, f"memory-{n}", path, f"{tune}, streaming: false")
            stream = run(work, f"stream-{n}", path, f"{tune}, streaming: true")
            rows.append({"rows": n, "table_mb": parquet_bytes(path) / MB, "load": load,
                         "memory": mem, "stream": stream})
    print("rows       table MB  in-memory s / MB above imports  streaming s / MB above imports"
          "  stream/memory time  load")
    for r in rows:
        m, s = r["memory"], r["stream"]
        print(f"{r['rows']:>9,}  {r['table_mb']:8.0f}  {m['wall_s']:8.0f} s / "
              f"{m['peak_mb'] - m.get('after_imports_mb', 0):5.0f} MB"
              f"            {s['wall_s']:8.0f} s / {s['peak_mb'] - s.get('after_imports_mb', 0):5.0f}"
              f" MB             {s['wall_s'] / m['wall_s']:5.2f}x  {r['load']:5.2f}")
    load_after = os.getloadavg()
    print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "crossover.json").write_text(json.dumps(
        {"rows": rows, "load_before": load_before, "load_after": load_after}, indent=1))


if __name__ == "__main__":
    main()
