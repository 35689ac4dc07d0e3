"""Batch scoring budgets, measured side by side in one run.

  1. throughput: `score_batches` reading 1M claims from Parquet, scoring them and writing
     Parquet, vs raw `Booster.inplace_predict` on the same rows already in memory as the
     model's feature matrix (no I/O, no conversion).                          goal >= 0.8x
  2. memory: peak RSS of a process scoring 1M rows vs one scoring 4M rows (same model, same
     code, separate processes so each peak is its own).                       goal: flat (<= 1.15x)
  3. explanations: `score_batches(..., explain=K)` (top-K tree SHAP contributions per row) vs
     plain `score_batches` on the same rows, alternated.          reported (no goal: SHAP costs
     a multiple of a prediction; the figure says how much to plan for)

The model is the registered fraud champion when MLOPS_HOME has one (after `make run`), else a
stand-in booster trained here with the depth and rounds a tuned fraud model has. The two
throughput sides alternate and medians are reported; read the ratios, not the seconds (a
shared 2-core machine).

Usage: python benchmarks/scoring.py [--repeats N] [--rows N] [--big-rows N] [--explain-rows N]
                                   [--explain K] [--explain-only]
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
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
CHUNK = 500_000


def write_claims(path: Path, rows: int) -> Path:
    """Synthetic claims written in chunks (the generator itself needs memory per row)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.training.synthetic import generate_claims

    if path.exists():
        return path
    tmp = path.with_suffix(".partial")
    writer = None
    for i, start in enumerate(range(0, rows, CHUNK)):
        frame = generate_claims(min(CHUNK, rows - start), seed=1000 + i)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        writer = writer or pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table)
    writer.close()
    tmp.replace(path)
    return path


def model_dir(into: Path) -> tuple[Path, str]:
    """booster.ubj + feature_spec.json of the fraud champion, or of a stand-in."""
    import xgboost as xgb

    from tasks.core.config import load_config
    from tasks.core.settings import Settings

    into.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_env()
    try:
        from tasks.adapters.registries import open_registry
        from tasks.batch.champion import load_champion

        cfg = load_config("fraud", settings.config_dir)
        if (settings.home / "mlflow.db").exists():
            champion = load_champion(open_registry(settings), cfg, into / "download")
            champion.booster.save_model(str(into / "booster.ubj"))
            (into / "feature_spec.json").write_text(champion.spec.model_dump_json())
            return into, f"registered fraud champion v{champion.version}"
    except Exception as exc:  # no champion yet: measure a stand-in, and say so
        print(f"(no fraud champion in {settings.home}: {str(exc).splitlines()[0][:80]})")
    from tasks.contracts.training import FeatureSpec
    from tasks.training.synthetic import generate_claims

    frame = generate_claims(50_000, seed=5)
    cats = ["region", "vehicle_type", "claim_channel"]
    features = [c for c in frame.columns if c not in {"claim_id", "event_date", "is_fraud",
                                                       "damage_severity", "settlement_amount"}]
    spec = FeatureSpec(task="binary", target="is_fraud", features=features,
                       categories={c: sorted(frame[c].unique()) for c in cats}, classes=["0", "1"])
    booster = xgb.train({"objective": "binary:logistic", "tree_method": "hist", "max_depth": 6,
                         "eta": 0.05}, xgb.DMatrix(spec.matrix(frame), frame["is_fraud"],
                                                   enable_categorical=True), 200)
    booster.save_model(str(into / "booster.ubj"))
    (into / "feature_spec.json").write_text(spec.model_dump_json())
    return into, "stand-in booster (depth 6, 200 rounds): run `make run` for the real champion"


def load(folder: Path):
    import xgboost as xgb

    from tasks.batch.champion import Champion
    from tasks.contracts.training import FeatureSpec

    booster = xgb.Booster()
    booster.load_model(str(folder / "booster.ubj"))
    booster.set_param({"device": "cpu", "nthread": os.cpu_count() or 1})
    spec = FeatureSpec.model_validate_json((folder / "feature_spec.json").read_text())
    return Champion(name="fraud", version="bench", alias="champion", booster=booster, spec=spec,
                    profile=None, sha256="")


def child(folder: Path, src: Path, dst: Path) -> None:
    """One scoring run in its own process (the memory measurement)."""
    from tasks.batch.scoring import score_batches

    loaded = high_water_mb()
    summary = score_batches(load(folder), str(src), str(dst))
    print(json.dumps({"rows": summary.rows, "seconds": summary.seconds,
                      "after_imports_mb": round(loaded), "peak_mb": round(high_water_mb())}))


def explain_ratio(champion, src: Path, out: Path, k: int, repeats: int) -> dict:
    """Plain scoring vs scoring with --explain k on the same file, alternated; medians."""
    from tasks.batch.scoring import score_batches

    plain, explained = [], []
    for i in range(repeats):
        start = time.perf_counter()
        rows = score_batches(champion, str(src), str(out)).rows
        plain.append(time.perf_counter() - start)
        start = time.perf_counter()
        score_batches(champion, str(src), str(out), explain=k)
        explained.append(time.perf_counter() - start)
        print(f"  round {i + 1}: plain {plain[-1]:.2f}s, --explain {k} {explained[-1]:.2f}s "
              f"({rows:,} rows)")
    p, e = statistics.median(plain), statistics.median(explained)
    print(f"3. explanations: plain {rows / p:,.0f} rows/s, --explain {k} {rows / e:,.0f} rows/s "
          f"-> {p / e:.3f}x of plain throughput ({e / p:.1f}x the time)")
    return {"rows": rows, "k": k, "plain_s": plain, "explain_s": explained,
            "explain_throughput_ratio": p / e}


def high_water_mb() -> float:
    """This process's peak resident memory (VmHWM: its own, unlike ru_maxrss, which on Linux
    keeps the high-water mark of the parent it was forked from)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def peak_rss_mb(cmd: list[str]) -> tuple[float, str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        sys.exit(f"scoring child failed: {proc.stderr[-2000:]}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return info["peak_mb"], f"{info['rows']:,} rows in {info['seconds']:.1f}s, " \
                            f"{info['after_imports_mb']} MB after imports"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=4_000_000)
    parser.add_argument("--explain-rows", type=int, default=20_000)
    parser.add_argument("--explain", type=int, default=5, help="K for --explain")
    parser.add_argument("--explain-only", action="store_true", help="only measurement 3")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*(Path(p) for p in args.child))
        return

    import pandas as pd

    from tasks.batch.scoring import score_batches

    work = Path(os.environ.get("MLOPS_HOME", REPO / ".mlops")) / "bench-scoring"
    work.mkdir(parents=True, exist_ok=True)
    if args.explain_only:
        folder, what = model_dir(work / "model")
        print(f"model: {what}")
        src = write_claims(work / f"claims-{args.explain_rows}.parquet", args.explain_rows)
        out = Path(tempfile.mkdtemp(prefix="mlops-bench-")) / "scores.parquet"
        result = explain_ratio(load(folder), src, out, args.explain, args.repeats)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "scoring_explain.json").write_text(json.dumps({"model": what, **result},
                                                                 indent=2))
        out.unlink(missing_ok=True)
        return
    print(f"writing {args.rows:,} and {args.big_rows:,} synthetic claims to {work} (kept for reruns)")
    small = write_claims(work / f"claims-{args.rows}.parquet", args.rows)
    big = write_claims(work / f"claims-{args.big_rows}.parquet", args.big_rows)
    folder, what = model_dir(work / "model")
    print(f"model: {what}")
    champion = load(folder)
    matrix = champion.spec.matrix(pd.read_parquet(small, columns=champion.spec.features))
    out = Path(tempfile.mkdtemp(prefix="mlops-bench-")) / "scores.parquet"

    pipeline, raw = [], []
    for i in range(args.repeats):
        start = time.perf_counter()
        summary = score_batches(champion, str(small), str(out))
        pipeline.append(time.perf_counter() - start)
        start = time.perf_counter()
        champion.booster.inplace_predict(matrix)
        raw.append(time.perf_counter() - start)
        print(f"  round {i + 1}: parquet->parquet {pipeline[-1]:.2f}s, inplace_predict "
              f"{raw[-1]:.2f}s ({summary.rows:,} rows)")
    p, r = statistics.median(pipeline), statistics.median(raw)
    throughput = r / p
    print(f"1. throughput: scoring {args.rows / p:,.0f} rows/s, raw inplace_predict "
          f"{args.rows / r:,.0f} rows/s -> {throughput:.2f}x of raw (goal >= 0.8)")

    del matrix
    base = [sys.executable, str(Path(__file__).resolve()), "--child", str(folder)]
    peaks = {}
    for label, src in (("1M", small), ("4M", big)):
        peaks[label], info = peak_rss_mb([*base, str(src), str(out)])
        print(f"  peak RSS scoring {label}: {peaks[label]:.0f} MB ({info})")
    flat = peaks["4M"] / peaks["1M"]
    print(f"2. memory: peak RSS at {args.big_rows:,} rows / at {args.rows:,} rows = {flat:.2f}x "
          "(goal: flat, <= 1.15)")
    explain_src = write_claims(work / f"claims-{args.explain_rows}.parquet", args.explain_rows)
    explained = explain_ratio(champion, explain_src, out, args.explain, args.repeats)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scoring.json").write_text(json.dumps({
        "model": what, "rows": args.rows, "pipeline_s": pipeline, "raw_s": raw,
        "throughput_ratio": throughput, "peak_rss_mb": peaks, "memory_ratio": flat,
        "explain": explained}, indent=2))
    out.unlink(missing_ok=True)
    failed = [name for name, ok in (("throughput", throughput >= 0.8), ("memory", flat <= 1.15))
              if not ok]
    if failed:
        sys.exit(f"over budget: {', '.join(failed)}")


if __name__ == "__main__":
    main()
