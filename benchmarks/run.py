"""Measured budgets, each a ratio of two commands timed side by side in one run.

  1. orchestration + tracking overhead: `mlops train` vs the same stage functions in a plain
     script (benchmarks/plain_pipeline.py), fixed small trial count.   goal <= 1.3x
  2. cached re-run vs cold run of `mlops train fraud` as shipped (unchanged data, config,
     code): the CLI's up-to-date check, and for reference the flow's own reuse path
     (`--force`: Prefect starts, data is loaded and validated, the version is found).
                                                        goal <= 0.1x (through the flow 0.25x)
  3. a `make run`-like sequence (`mlops run fraud --as make-run`, generate, score, monitor) with
     the local stack up (`mlops server start`) vs a temporary Prefect server per command
     (today's laptop mode without the stack).                              reported, no goal

Both are whole processes (what a user waits for) and are alternated, so machine noise hits
both sides alike; medians are reported. Absolute times on a shared 2-core box mean little:
read the ratios. Every round trains on new data (another generator seed), so each `mlops`
cold run really trains, against a tracking store that already exists, as a user's would.

By default budgets 1 and 2 run with the local stack up (`mlops server start` on free ports in a
temp MLOPS_HOME), as `make run` now does. --temporary-servers measures them with a temporary
Prefect server per command instead; --prefect-server with one bare `prefect server start` (the
production setup, no MLflow server).

Beside budgets 1 and 2 it prints where one run's seconds go, stage by stage (imports, the
up-to-date check, the registry, each Prefect task; the same functions in the plain script),
from one extra run of each side under benchmarks/stages.py, and (budget 4) the CPU seconds of
the read-only commands `mlops history`, `status`, `audit verify`, `models`, `check-config` and
`server status` (goal <= 1.5 s each). Every
figure comes with the load average it was taken under.

Usage: python benchmarks/run.py [--repeats N] [--trials N]
                                [--temporary-servers | --prefect-server] [--skip-make-run | --only-make-run]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RESULTS = REPO / "benchmarks" / "results"


def timed(cmd: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> float:
    return measured(cmd, env, ok)[0]


def measured(cmd: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)
             ) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in ok:
        sys.exit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}\n"
                 f"{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def stages(side: str, args: list[str], env: dict[str, str], tmp: Path) -> dict:
    """One run under benchmarks/stages.py: seconds per stage, imports per stage, total."""
    out = tmp / f"stages-{side}-{time.monotonic_ns()}.json"
    wall = timed([sys.executable, str(REPO / "benchmarks" / "stages.py"), str(out), side, *args],
                 env)
    found = json.loads(out.read_text())
    found["wall"] = wall  # the process, start-up and shutdown included
    return found


def print_stages(title: str, runs: dict[str, dict]) -> None:
    """Stages side by side: seconds (of which imports), in the order the orchestrated run met
    them; a stage one side does not have is blank there."""
    names: list[str] = []
    for found in runs.values():
        names += [n for n in found["seconds"] if n not in names]
    print(f"\n{title} ({load()})")
    print(f"  {'stage':<58}" + "".join(f"{side:>22}" for side in runs))
    for name in names:
        cells = []
        for found in runs.values():
            secs = found["seconds"].get(name)
            imp = found["imports"].get(name, 0.0)
            calls = found["calls"].get(name, 1)
            cells.append("" if secs is None else
                         f"{secs:6.2f}s" + (f" (imp {imp:4.2f})" if imp >= 0.005 else " " * 11)
                         + (f" x{calls}" if calls > 1 else "   "))
        print(f"  {name[:58]:<58}" + "".join(f"{c:>22}" for c in cells))
    print(f"  {'Python start-up and shutdown (process wall - timed run)':<58}" + "".join(
        f"{max(found['wall'] - found['total'], 0.0):6.2f}s{'':14}" for found in runs.values()))
    print(f"  {'whole process':<58}" + "".join(
        f"{found['wall']:6.2f}s (imp {sum(found['imports'].values()):4.2f})   "
        for found in runs.values()))


READ_ONLY = (("history", "fraud"), ("status", "fraud"), ("audit", "verify", "fraud"),
             ("models",), ("check-config", "fraud"), ("server", "status"))


def read_only_cpu(env: dict[str, str], repeats: int) -> dict[str, list[float]]:
    """CPU seconds of each read-only command on a warm cache (one unmeasured run first)."""
    mlops = str(BIN / "mlops")
    cpu: dict[str, list[float]] = {}
    for args in READ_ONLY:
        measured([mlops, *args], env, ok=(0, 2))
        cpu[" ".join(args)] = [measured([mlops, *args], env, ok=(0, 2))[1]
                               for _ in range(repeats)]
        print(f"  mlops {' '.join(args)}: CPU median {statistics.median(cpu[' '.join(args)]):.2f}s"
              f" ({load()})", flush=True)
    return cpu


def bench_config(tmp: Path, trials: int | None, seed: int) -> Path:
    text = (REPO / "configs" / "models" / "fraud.yaml").read_text()
    if trials:
        text = text.replace("n_trials: 20", f"n_trials: {trials}")
    text = text.replace("rows: 50000", f"rows: 50000\n  seed: {seed}")
    path = tmp / "configs" / "fraud.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def local_stack(base: dict[str, str]):
    """`mlops server start` on free ports for base's MLOPS_HOME; stopped afterwards."""
    env = {**base, "MLOPS_PREFECT_PORT": str(free_port()), "MLOPS_MLFLOW_PORT": str(free_port()),
           # `mlops server start` activates a Prefect profile: in a temporary home, not ~/.prefect
           "PREFECT_HOME": str(Path(base["MLOPS_HOME"]) / "prefect-home")}
    mlops = str(BIN / "mlops")
    started = time.perf_counter()
    timed([mlops, "server", "start"], env)
    print(f"local stack up in {time.perf_counter() - started:.1f}s "
          f"(Prefect on {env['MLOPS_PREFECT_PORT']}, MLflow on {env['MLOPS_MLFLOW_PORT']})",
          flush=True)
    try:
        yield env
    finally:
        subprocess.run([mlops, "server", "stop"], env=env, capture_output=True)


def make_run_like(env: dict[str, str], config: Path, tmp: Path, seed: int) -> float:
    """`make run`'s commands for one model: run (approved up front), generate, score, monitor."""
    mlops = str(BIN / "mlops")
    env = {**env, "MLOPS_CONFIG_DIR": str(config.parent)}
    batch, scores = tmp / f"batch-{seed}.parquet", tmp / f"scores-{seed}.parquet"
    start = time.perf_counter()
    timed([mlops, "run", "fraud", "--as", "make-run", "--comment", "benchmark"], env)
    timed([mlops, "generate", "--rows", "20000", "--seed", str(seed), "--output", str(batch)],
          env)
    timed([mlops, "score", "fraud", "--input", str(batch), "--output", str(scores)], env)
    timed([mlops, "monitor", "fraud", "--input", str(batch)], env, ok=(0, 4))
    return time.perf_counter() - start


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
    parser.add_argument("--trials", type=int, default=3, help="Optuna trials (default 3)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--prefect-server", action="store_true",
                      help="budgets 1-2 against one bare long-running Prefect server")
    mode.add_argument("--temporary-servers", action="store_true",
                      help="budgets 1-2 with a temporary Prefect server per command")
    parser.add_argument("--skip-make-run", action="store_true",
                        help="leave out budget 3 (stack vs temporary servers)")
    parser.add_argument("--only-make-run", action="store_true",
                        help="run budget 3 alone")
    parser.add_argument("--no-stages", action="store_true",
                        help="leave out the per-stage breakdown runs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as tmpdir, \
            contextlib.ExitStack() as stack:
        tmp = Path(tmpdir)
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("MLOPS_", "MLFLOW_", "PREFECT_"))}
        base.update(MLOPS_DEVICE="cpu", PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                    MLOPS_HOME=str(tmp / "home"))
        bare = dict(base)
        if args.prefect_server:
            base["PREFECT_API_URL"] = stack.enter_context(prefect_server(tmp, base))
            print(f"using a long-running Prefect server at {base['PREFECT_API_URL']}")
        elif not args.temporary_servers:
            base = stack.enter_context(local_stack(base))
        mlops = [str(BIN / "mlops"), "train", "fraud"]

        def env(config: Path) -> dict[str, str]:
            return {**base, "MLOPS_CONFIG_DIR": str(config.parent)}

        rounds = 0 if args.only_make_run else args.repeats
        if rounds:
            print(f"warming up (imports, Prefect and MLflow databases) ... {args.repeats} "
                  "repeats", flush=True)
            timed(mlops, env(bench_config(tmp / "warmup", args.trials, 1)))

        flow_small, plain_runs = [], []
        if rounds:
            print(f"budget 1: fraud, {args.trials} trials", flush=True)
        for i in range(rounds):
            small = bench_config(tmp / f"small{i}", args.trials, 100 + i)
            flow_small.append(timed(mlops, env(small)))
            plain_runs.append(timed([sys.executable, "benchmarks/plain_pipeline.py", str(small)],
                                    base))
            print(f"  round {i + 1}: mlops {flow_small[-1]:.1f}s, plain {plain_runs[-1]:.1f}s "
                  f"({load()})", flush=True)
        breakdown: dict[str, dict] = {}
        if rounds and not args.no_stages:
            small = bench_config(tmp / "stages-small", args.trials, 150)
            breakdown["1"] = {
                "mlops train": stages("mlops", ["train", "fraud"], env(small), tmp),
                "plain script": stages("plain", [str(small)], base, tmp)}
            print_stages(f"budget 1, where the seconds go (fraud, {args.trials} trials)",
                         breakdown["1"])

        cold, cached, forced = [], [], []
        if rounds:
            print("budget 2: fraud as shipped (20 trials)", flush=True)
        for i in range(rounds):
            shipped = bench_config(tmp / f"shipped{i}", None, 200 + i)
            cold.append(timed(mlops, env(shipped)))
            cached.append(timed(mlops, env(shipped)))
            forced.append(timed([*mlops, "--force"], env(shipped)))
            print(f"  round {i + 1}: cold {cold[-1]:.1f}s, cached {cached[-1]:.1f}s, "
                  f"cached through the flow {forced[-1]:.1f}s ({load()})", flush=True)
        read_only: dict[str, list[float]] = {}
        if rounds:
            shipped = bench_config(tmp / "shipped0", None, 200)  # trained above: cached now
            if not args.no_stages:
                breakdown["2"] = {
                    "mlops train, cached": stages("mlops", ["train", "fraud"], env(shipped),
                                                  tmp),
                    "--force, cached": stages("mlops", ["train", "fraud", "--force"],
                                              env(shipped), tmp)}
                print_stages("budget 2, where a cached re-run's seconds go", breakdown["2"])
            read_only = read_only_cpu(env(shipped), args.repeats)

        with_stack, temporary = [], []
        if not args.skip_make_run:
            print(f"budget 3: make-run-like sequence, fraud with {args.trials} trials", flush=True)
            up = base if not (args.prefect_server or args.temporary_servers) else \
                stack.enter_context(local_stack(bare))
            alone = {**bare, "MLOPS_HOME": str(tmp / "home-temporary")}  # sees no stack
            warm = bench_config(tmp / "warm3", args.trials, 1)
            for side in (up, alone):  # both get a champion first: each round re-scores it
                make_run_like(side, warm, tmp, 300)
            for i in range(args.repeats):
                config = bench_config(tmp / f"seq{i}", args.trials, 400 + i)
                with_stack.append(make_run_like(up, config, tmp, 500 + i))
                temporary.append(make_run_like(alone, config, tmp, 600 + i))
                print(f"  round {i + 1}: stack up {with_stack[-1]:.1f}s, temporary servers "
                      f"{temporary[-1]:.1f}s", flush=True)

    results = [] if not flow_small else [
        summarize("1. orchestration + tracking overhead", flow_small, plain_runs,
                  "mlops train (Prefect + MLflow)", "plain script", 1.3),
        summarize("2. cached re-run vs cold run", cached, cold,
                  "mlops train, cached", "mlops train, cold", 0.1),
        summarize("2b. cached re-run through the flow (--force) vs cold run", forced, cold,
                  "mlops train --force, cached", "mlops train, cold", 0.25),
    ]
    for command, cpu in read_only.items():
        print(f"\n4. read-only command, CPU seconds on a warm cache: mlops {command}\n"
              f"  median {statistics.median(cpu):5.2f}s  (min {min(cpu):.2f}, max {max(cpu):.2f})"
              f"  goal <= 1.5s  -> {'meets' if statistics.median(cpu) <= 1.5 else 'MISSES'}")
        results.append({"name": f"4. cpu of mlops {command}", "cpu": cpu, "goal": 1.5})
    if with_stack:
        results.append(summarize("3. make-run-like sequence: local stack up vs temporary servers",
                                 with_stack, temporary, "local stack up", "temporary servers",
                                 1.0))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"args": vars(args), "results": results,
                               "stages": breakdown if flow_small else {},
                               "loadavg_at_end": os.getloadavg()}, indent=2))
    mode = ("one long-running Prefect server" if args.prefect_server else
            "a temporary Prefect server per command" if args.temporary_servers else
            "the local stack (mlops server start)")
    print(f"mode: {mode}; {load()}")
    print(f"\nraw timings: {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
