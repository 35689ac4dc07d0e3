"""Summary of `make profile`: the per-stage table, the slowest top-level imports, and where
the cProfile file and its top functions are.

Usage: python benchmarks/profile_report.py PROFILE_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import print_stages  # noqa: E402


def top_imports(path: Path, count: int = 12) -> list[tuple[float, str]]:
    """The slowest imports that nothing else imported first (`-X importtime`'s top level)."""
    found = []
    for line in path.read_text().splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2]
        if name.startswith("  ") or not name.startswith(" "):
            continue  # nested (indented past the first space) or the header
        found.append((int(parts[1]) / 1e6, name.strip()))
    return sorted(found, reverse=True)[:count]


def main(folder: Path) -> None:
    found = json.loads((folder / "stages.json").read_text())
    found["wall"] = found["total"]  # timed inside the process: no start-up figure here
    print_stages("one `mlops train --force`, stage by stage", {"mlops": found})
    print("\nslowest top-level imports (-X importtime, cumulative):")
    for seconds, name in top_imports(folder / "importtime.txt"):
        print(f"  {seconds:6.2f}s  {name}")
    print(f"\ncProfile: {folder / 'train.prof'} (top 40 by cumulative time in "
          f"{folder / 'train-top.txt'}; browse with `python -m pstats`)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
