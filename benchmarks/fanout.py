"""Fan-out latency of `training.workers: N` on GitLab, measured on loopback: the seconds from
`prefect deployment run training-pipeline/fraud` until the N hpo-worker runs are Running, through
the gitlab-ci worker and the fake GitLab's simulated runner (each run is a GitLab pipeline whose
`flow-run` job runs `prefect flow-run execute` here).

It starts what tests/e2e/test_gitlab_worker.py starts, with the same helpers: a Prefect server on
a fresh PostgreSQL database, `mlops pools apply --type gitlab-ci`, `prefect deploy` of the two
deployments, the fake GitLab and one gitlab-ci worker; then one training run of a small fraud
config with `workers: N` and a study in a fresh PostgreSQL database. Everything is stopped and
dropped at the end (the runs are cancelled once the workers are Running).

Printed: when the command returned (the run exists), when the training run was Running, when
each worker run was created (by the training run) and Running, the total divided by N, and the
load average. A 2-core machine
starts each job's Python process (prefect, xgboost, mlflow imports) on the same cores: read the
figures with the load beside them.

Usage: python benchmarks/fanout.py [--workers 3] [--poll 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def _check(cmd: list[str], env: dict, timeout_s: float = 300) -> str:
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout_s)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed: {(done.stdout + done.stderr)[-1500:]}")
    return done.stdout


def _states(api: str, parent: str) -> dict[str, dict]:
    from tests.e2e.test_deployments import flow_runs

    found = flow_runs(api, tags={"all_": [f"training-run:{parent}"]})
    return {r["id"]: r for r in found}


def measure(workers: int, poll_s: int, root: Path) -> dict:
    from tests.e2e.conftest import BIN, background, cli_env, free_port, postgres_database, wait_http
    from tests.e2e.test_deployments import api_get, api_post, write_configs
    from tests.fakes.gitlab_api import FakeGitLab

    with ExitStack() as stack:
        prefect_db = stack.enter_context(postgres_database("fanout_prefect"))
        study_db = stack.enter_context(postgres_database("fanout_study"))
        port = free_port()
        server = stack.enter_context(background(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            root / "server.log", env=cli_env(
                PREFECT_API_DATABASE_CONNECTION_URL=prefect_db.replace(
                    "postgresql://", "postgresql+asyncpg://"),
                PREFECT_HOME=str(root / "server-home"), PREFECT_UI_ENABLED="false")))
        api = f"http://127.0.0.1:{port}/api"
        wait_http(f"{api}/health", 180, server)
        configs = write_configs(root / "configs", fraud_trials=40)
        fraud = (configs / "fraud.yaml").read_text()
        (configs / "fraud.yaml").write_text(fraud.replace(
            "max_rounds: 60}", f"max_rounds: 60, workers: {workers}}}"))
        env = cli_env(PREFECT_API_URL=api, MLOPS_HOME=str(root / "state"),
                      MLOPS_CONFIG_DIR=str(configs), MLOPS_PROJECT_DIR=str(REPO),
                      MLOPS_IMAGE_BUILD="skip", PREFECT_WORKER_QUERY_SECONDS=str(poll_s),
                      PREFECT_HOME=str(root / "prefect-home"))
        _check([str(BIN / "mlops"), "pools", "apply", "--type", "gitlab-ci"], env)
        _check([str(BIN / "prefect"), "--no-prompt", "deploy", "--name",
                "training-pipeline/fraud", "--name", "hpo-worker/hpo-fraud"], env)

        fake = FakeGitLab(tokens={"glpat-worker": ["api"]}).start()
        stack.callback(fake.stop)
        runner = {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HOME": str(root),
                  "LANG": "C.UTF-8", "MLOPS_HOME": str(root / "runner-state"),
                  "MLOPS_CONFIG_DIR": str(configs), "PREFECT_HOME": str(root / "runner-prefect"),
                  "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                  "MLOPS_OPTUNA_STORAGE": study_db.replace("postgresql://",
                                                           "postgresql+psycopg://")}
        ci = fake.enable_ci(REPO / ".gitlab-ci.yml", runner, root)
        gl_env = {**env, "CI_SERVER_URL": fake.url, "CI_PROJECT_ID": "42",
                  "MLOPS_GITLAB_TOKEN": "glpat-worker"}
        stack.enter_context(background(
            [str(BIN / "prefect"), "worker", "start", "--pool", "cpu-runners", "--name", "gl-cpu"],
            root / "worker.log", env=gl_env))
        time.sleep(2 * poll_s)  # the worker has polled once: it is not starting up in the clock

        load_before = os.getloadavg()
        start = time.perf_counter()
        made = subprocess.run([str(BIN / "prefect"), "deployment", "run",
                               "training-pipeline/fraud", "--param", "deploy=false"],
                              env=gl_env, capture_output=True, text=True, timeout=120)
        created = time.perf_counter() - start
        if made.returncode != 0:
            raise SystemExit(f"prefect deployment run failed: {made.stderr[-1500:]}")
        parent = made.stdout.split("UUID:")[1].split()[0]
        parent_running, seen, running = None, {}, {}
        deadline = start + 600
        while len(running) < workers:
            now = time.perf_counter()
            if now > deadline:
                raise SystemExit(f"only {len(running)} of {workers} worker runs Running in 600 s")
            parent_state = api_get(api, f"/flow_runs/{parent}")["state"]["type"]
            if parent_running is None and parent_state == "RUNNING":
                parent_running = now - start
            if parent_state in FINAL:
                raise SystemExit(f"the training run ended {parent_state} before its workers ran")
            for run_id, run in _states(api, parent).items():
                seen.setdefault(run_id, now - start)  # the training run's start-workers made it
                if run_id not in running and run["state"]["type"] == "RUNNING":
                    running[run_id] = (run["parameters"]["worker"], now - start)
            time.sleep(0.25)
        load_after = os.getloadavg()
        pipelines = len(ci.pipelines)
        for run_id in [parent, *running]:  # nothing is left running: cancel, then stop all
            api_post(api, f"/flow_runs/{run_id}/set_state",
                     {"state": {"type": "CANCELLING"}, "force": True})
        time.sleep(2 * poll_s)
    times = sorted(t for _, t in running.values())
    return {"workers": workers, "created_s": created, "parent_running_s": parent_running,
            "workers_created_s": sorted(seen.values()),
            "created_to_running_s": sorted(t - seen[r] for r, (_, t) in running.items()),
            "worker_running_s": times, "total_s": times[-1], "per_worker_s": times[-1] / workers,
            "pipelines": pipelines, "load_before": load_before, "load_after": load_after,
            "worker_poll_s": poll_s, "by_worker": {str(w): t for w, t in running.values()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=3, help="training.workers of the run")
    parser.add_argument("--poll", type=int, default=2,
                        help="PREFECT_WORKER_QUERY_SECONDS of the gitlab-ci worker (default 10)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fanout-") as tmp:
        row = measure(args.workers, args.poll, Path(tmp))
    print(f"`prefect deployment run` returned after {row['created_s']:.1f} s; training run "
          f"Running at {row['parent_running_s']:.1f} s")
    print("worker runs created at " + ", ".join(f"{t:.1f}" for t in row["workers_created_s"])
          + " s (the training run loaded, validated, planned and made the study before); "
          "Running at " + ", ".join(f"{t:.1f}" for t in row["worker_running_s"]) + " s ("
          + ", ".join(f"{t:.1f}" for t in row["created_to_running_s"]) + " s after each was "
          "created: worker poll, GitLab pipeline, job start, `prefect flow-run execute`)")
    print(f"fan-out: {row['workers']} hpo-worker runs Running {row['total_s']:.1f} s after "
          f"`prefect deployment run` = {row['per_worker_s']:.1f} s per worker "
          f"({row['pipelines']} GitLab pipelines; worker poll {row['worker_poll_s']} s); "
          f"load average {row['load_before'][0]:.1f} before, {row['load_after'][0]:.1f} after")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fanout.json").write_text(json.dumps(row, indent=2, default=str))


if __name__ == "__main__":
    main()
