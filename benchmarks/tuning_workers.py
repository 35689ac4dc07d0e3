"""Tuning workers (`training.workers: N`), measured in one run against PostgreSQL on this machine.

  coordination cost: a study whose objective sleeps 1 s (no CPU; TPE with constant liar suggests
  the real search space), 48 trials on 1, 4 and 8 worker processes, each process started and
  waiting before the clock starts. Time from "go" until every worker has left its loop, as a
  ratio of 48/N s (process exit, printed beside it, is not coordination). goal (8): <= 1.15x
  real work (--real): fraud, 20 trials, 1 worker with 2 threads vs 2 workers with 1 thread each;
  the time ratio, and the test ROC AUC of each side's refit winner (within 0.002).

Each side gets a fresh database (dropped after). Absolute seconds on a shared 2-core machine mean
little: read the ratios, and the load average printed with them.

Usage: python benchmarks/tuning_workers.py [--trials 48] [--workers 1 4 8] [--real]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
GOAL = 1.15
AUC_TOLERANCE = 0.002
PG = os.environ.get("PGHOST", "127.0.0.1")

SLEEPER = """
import sys, time
from pathlib import Path
import optuna
from tasks.training.boosting import open_study, suggest_params
from tasks.training.workers import StudyLock, run_trials, shared_storage, worker_sampler

url, worker, n, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
optuna.logging.set_verbosity(optuna.logging.WARNING)  # as the hpo-worker runs
store = shared_storage(url)
study = open_study("bench", store, 42, worker_sampler(42, worker))
lock = StudyLock(store, "bench")

def objective(trial):
    suggest_params(trial)
    time.sleep(1.0)
    return trial.number % 7

print("ready", flush=True)
while not go.exists():
    time.sleep(0.01)
print("ran", run_trials(study, objective, n, lock, worker), flush=True)  # as shipped: POLL_S
"""

FRAUD = """
import os, sys
from benchmarks.tuning import prepare
from tasks.training.hpo import tune_as_worker

url, worker, trials = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cfg, frame, spec, splits = prepare(50_000, trials)
print("ran", tune_as_worker(frame, spec, splits, cfg.training, "cpu", "bench", url, worker,
                            progress=lambda _: None), flush=True)
"""


@contextmanager
def database():
    import psycopg

    name = f"bench_workers_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(host=PG, user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://postgres@{PG}:5432/{name}"
        finally:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _spawn(script: str, args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=REPO, text=True,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def coordination(workers: int, trials: int) -> dict:
    """Seconds from "go" until every worker has left its loop (and until every process has
    exited), and the study's span (first trial start to last trial end), for one fresh study."""
    import optuna

    from tasks.training.boosting import open_study
    from tasks.training.workers import shared_storage

    with database() as url, tempfile.TemporaryDirectory() as tmp:
        open_study("bench", shared_storage(url), 42)
        go = Path(tmp) / "go"
        procs = [_spawn(SLEEPER, [url, str(w), str(trials), str(go)]) for w in range(workers)]
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            assert line.startswith("ready"), p.stderr.read() if p.stderr else line
        start = time.perf_counter()
        go.touch()
        lines = [p.stdout.readline() for p in procs if p.stdout is not None]  # "ran k"
        wall = time.perf_counter() - start
        outs = [p.communicate() for p in procs]
        exited = time.perf_counter() - start
        assert all(p.returncode == 0 for p in procs), [o[1][-800:] for o in outs]
        assert all(line.startswith("ran") for line in lines), lines
        study = optuna.load_study(study_name="bench", storage=url)
        done = [t for t in study.trials if t.state.is_finished()]
        span = (max(t.datetime_complete for t in done)
                - min(t.datetime_start for t in done)).total_seconds()
        return {"workers": workers, "wall_s": wall, "span_s": span, "trials": len(done),
                "exited_s": exited, "failed": sum(t.state.name == "FAIL" for t in study.trials),
                "ideal_s": trials / workers, "ratio": wall / (trials / workers)}


def real_work(trials: int) -> dict:
    """fraud: 1 worker with 2 threads vs 2 workers with 1 thread each, same study settings."""
    import optuna

    from benchmarks.tuning import prepare, test_auc
    from tasks.training.boosting import fit_params, open_study
    from tasks.training.workers import shared_storage

    cfg, frame, spec, splits = prepare(50_000, trials)
    out = {}
    for label, workers, threads in (("1x2", 1, "2"), ("2x1", 2, "1")):
        with database() as url:
            open_study("bench", shared_storage(url), cfg.training.seed)
            start = time.perf_counter()
            procs = [_spawn(FRAUD, [url, str(w), str(trials)], {"OMP_NUM_THREADS": threads})
                     for w in range(workers)]
            outs = [p.communicate() for p in procs]
            wall = time.perf_counter() - start
            assert all(p.returncode == 0 for p in procs), [o[1][-800:] for o in outs]
            study = optuna.load_study(study_name="bench", storage=url)
            best = fit_params(frame, spec, splits, cfg.training, "cpu", study.best_params)
            out[label] = {"wall_s": wall, "best_value": study.best_value,
                          "auc": test_auc(best.booster(), frame, spec, splits)}
            print(f"fraud {label}: {wall:.1f} s, best {study.best_value:.5f}, test ROC AUC "
                  f"{out[label]['auc']:.4f}", flush=True)
    out["ratio"] = out["2x1"]["wall_s"] / out["1x2"]["wall_s"]
    out["auc_gap"] = out["1x2"]["auc"] - out["2x1"]["auc"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=48)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--real", action="store_true", help="also the fraud comparison")
    parser.add_argument("--real-trials", type=int, default=20)
    args = parser.parse_args()
    results: dict = {"load_before": os.getloadavg(), "coordination": []}
    for workers in args.workers:
        row = coordination(workers, args.trials)
        results["coordination"].append(row)
        print(f"{workers} worker(s): {row['wall_s']:.2f} s for {row['trials']} trials "
              f"(study span {row['span_s']:.2f} s, exited {row['exited_s']:.1f} s; ideal "
              f"{row['ideal_s']:.2f} s) = "
              f"{row['ratio']:.3f}x of {args.trials}/{workers} s; load {os.getloadavg()[0]:.1f}",
              flush=True)
    eight = next((r for r in results["coordination"] if r["workers"] == 8), None)
    if eight:
        print(f"\ncoordination cost, 8 workers: {eight['ratio']:.3f}x of {args.trials}/8 s "
              f"(goal <= {GOAL}x: {'met' if eight['ratio'] <= GOAL else 'MISSED'})")
    if args.real:
        real = real_work(args.real_trials)
        results["real"] = real
        print(f"fraud, {args.real_trials} trials: 2 workers x 1 thread / 1 worker x 2 threads = "
              f"{real['ratio']:.2f}x; test ROC AUC gap {real['auc_gap']:+.4f} (allowed "
              f"{AUC_TOLERANCE}: {'met' if abs(real['auc_gap']) <= AUC_TOLERANCE else 'MISSED'})")
    results["load_after"] = os.getloadavg()
    print(f"load average before {results['load_before'][0]:.1f}, after "
          f"{results['load_after'][0]:.1f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tuning_workers.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
