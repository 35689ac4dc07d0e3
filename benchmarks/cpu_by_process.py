"""Where a command's CPU goes, by kind of process: run it, sample every process below it.

On a 2-core machine a test run is bound by CPU, not by waits: the wall time follows the CPU
seconds its processes burn, so this is the table to read before cutting a test run's time.
Every 0.5 s the CPU time of each process below the command is read from /proc; a process that
lives less than one sample is missed (its cost is small), and a process's last half second
before it exits is lost. Processes are grouped by what they run (`mlops promote`, the Prefect
server, a flow run's process, MLflow's scoring server, ...).

Usage: python benchmarks/cpu_by_process.py [--json OUT] -- COMMAND ...
       (e.g. `-- make test`, or `-- .venv/bin/pytest -q tests/e2e/test_governance.py`)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
# (pattern on the command line, kind): the first match names the process
KINDS = [
    (r"uvicorn .*prefect\.server.*--lifespan on", "Prefect server, temporary (mlops, tests)"),
    (r"prefect server start|uvicorn .*prefect\.server", "Prefect server"),
    (r"huey_consumer|mlflow\.server\.jobs", "MLflow server's job consumers"),
    (r"mlflow server|mlflow\.server|uvicorn_log_config", "MLflow tracking server"),
    (r"scoring_server|mlflow models serve", "MLflow scoring server (staging)"),
    (r"prefect worker start", "Prefect worker"),
    (r"prefect\.runner|prefect\.engine|prefect flow-run execute", "flow run process"),
    (r"/mlops (\w[\w-]*)", "mlops {0}"),
    (r"exec\(eval\(sys\.stdin", "pytest worker (in-process tests)"),
    (r"pytest", "pytest"),
    (r"^postgres", "PostgreSQL"),
    (r"chrom", "Chromium"),
    (r"node|gitlab-ci-local|cc1plus", "node (gitlab-ci-local)"),
]


def kind(command: str) -> str:
    for pattern, name in KINDS:
        found = re.search(pattern, command)
        if found:
            return name.format(*found.groups())
    return "other: " + " ".join(Path(part).name for part in command.split()[:2])


def _stat(pid: str) -> tuple[int, str, float] | None:
    """(parent pid, start time, CPU seconds) of one process, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[19], (int(fields[11]) + int(fields[12])) / TICKS


def sample(root: int, seen: dict[tuple[str, str], list]) -> None:
    """Every process below root, and every one seen below it before (a server that detaches
    is re-parented to init, and still counts). PostgreSQL's backends belong to the cluster,
    not to the command: they are not counted."""
    stats = {pid: s for pid in os.listdir("/proc") if pid.isdigit() and (s := _stat(pid))}
    children: dict[int, list[str]] = defaultdict(list)
    for pid, (parent, _, _) in stats.items():
        children[parent].append(pid)
    todo = list(children[root]) + [pid for pid, started in seen
                                   if pid in stats and stats[pid][1] == started]
    done: set[str] = set()
    while todo:
        pid = todo.pop()
        if pid in done:
            continue
        done.add(pid)
        todo += children[int(pid)]
        _, started, cpu = stats[pid]
        entry = seen.get((pid, started))
        if entry is None:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace").strip()
            except OSError:
                continue
            seen[(pid, started)] = [kind(cmd), cpu]
        else:
            entry[1] = cpu


def table(seen: dict[tuple[str, str], list]) -> list[tuple[str, float, int]]:
    total: dict[str, list] = defaultdict(lambda: [0.0, 0])
    for name, cpu in seen.values():
        total[name][0] += cpu
        total[name][1] += 1
    return sorted(((name, cpu, n) for name, (cpu, n) in total.items()), key=lambda r: -r[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="also write the table here")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("name the command to run after --")
    started, load = time.monotonic(), os.getloadavg()
    proc = subprocess.Popen(command)
    seen: dict[tuple[str, str], list] = {}
    while proc.poll() is None:
        sample(proc.pid, seen)
        time.sleep(0.5)
    wall = time.monotonic() - started
    rows = table(seen)
    cpu = sum(r[1] for r in rows)
    print(f"\n{' '.join(command)}: exit {proc.returncode}, {wall / 60:.1f} min wall, "
          f"{cpu / 60:.1f} CPU-min below it ({cpu / wall:.2f} cores busy on average), load "
          f"average {load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    print(f"{'CPU-min':>8} {'share':>6} {'processes':>9}  kind")
    for name, seconds, n in rows:
        print(f"{seconds / 60:8.2f} {seconds / cpu:6.0%} {n:9d}  {name}")
    if args.json:
        Path(args.json).write_text(json.dumps({"wall_s": wall, "rows": rows}, indent=1))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
