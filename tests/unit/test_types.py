"""The type ratchet: `make lint` runs mypy with zero errors outside the modules that
pyproject.toml's `ignore_errors` override lists; this test keeps that list honest.

A listed module fails here when it has become clean (take it off the list) or when it has more
errors than the count in its comment (fix the new ones): the list and its counts only shrink.
The planted-violation tests show the check itself can fail.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_ENTRY = re.compile(r'^\s*"(?P<module>[\w.]+)",\s*#\s*(?P<count>\d+) errors?\b', re.MULTILINE)
_ERROR = re.compile(r"^(?P<path>[\w/.-]+\.py):\d+: error:", re.MULTILINE)

pytestmark = pytest.mark.timeout(600)  # a cold mypy cache on a busy 2-core machine


def ratchet(pyproject: str) -> dict[str, int]:
    """The modules of the `ignore_errors = true` override, each with the count in its comment."""
    config = tomllib.loads(pyproject)["tool"]["mypy"]
    ignored = [o for o in config.get("overrides", []) if o.get("ignore_errors")]
    assert len(ignored) <= 1, "one ratchet list, not several"
    modules = ignored[0]["module"] if ignored else []
    modules = [modules] if isinstance(modules, str) else modules
    counts = {m.group("module"): int(m.group("count")) for m in _ENTRY.finditer(pyproject)}
    missing = [m for m in modules if m not in counts]
    assert not missing, f"ratchet entries without an '# N errors' comment: {missing}"
    return {m: counts[m] for m in modules}


def module_file(root: Path, module: str) -> Path:
    base = root.joinpath(*module.split("."))
    return base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"


def _ini(config: dict) -> str:
    """pyproject's mypy settings as a mypy.ini, less the ratchet list (so its errors show)."""
    def value(v: object) -> str:
        if isinstance(v, bool):
            return str(v)
        return ",".join(v) if isinstance(v, list) else str(v)

    lines = ["[mypy]"] + [f"{k} = {value(v)}" for k, v in config.items()
                          if k not in ("overrides", "files")]
    for override in config.get("overrides", []):
        if override.get("ignore_errors"):
            continue
        modules = override["module"]
        lines.append(f"[mypy-{value(modules)}]")
        lines += [f"{k} = {value(v)}" for k, v in override.items() if k != "module"]
    return "\n".join(lines) + "\n"


def errors_now(root: Path, modules: list[str], cache: Path) -> dict[str, int]:
    """mypy's error count in each listed module, with the ratchet lifted (imports checked
    silently: only the listed files report)."""
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mypy"]
    ini = cache / "ratchet.ini"
    cache.mkdir(parents=True, exist_ok=True)
    ini.write_text(_ini(config))
    files = {str(module_file(root, m).relative_to(root)): m for m in modules}
    done = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ini),
                           "--follow-imports=silent", "--cache-dir", str(cache / "mypy"),
                           "--no-error-summary", *files], cwd=root, capture_output=True, text=True)
    assert done.returncode in (0, 1), done.stderr or done.stdout
    found = dict.fromkeys(modules, 0)
    for match in _ERROR.finditer(done.stdout):
        if match.group("path") in files:
            found[files[match.group("path")]] += 1
    return found


def problems(root: Path, cache: Path) -> list[str]:
    listed = ratchet((root / "pyproject.toml").read_text())
    if not listed:  # every module is checked by `make lint`
        return []
    absent = [m for m in listed if not module_file(root, m).is_file()]
    if absent:
        return [f"{m}: on the ratchet list but no such module" for m in absent]
    now = errors_now(root, list(listed), cache)
    found = []
    for module, allowed in listed.items():
        if now[module] == 0:
            found.append(f"{module}: type-clean now, take it off the ratchet list")
        elif now[module] > allowed:
            found.append(f"{module}: {now[module]} type errors, the list allows {allowed}")
    return found


def test_ratchet_list_only_shrinks():
    cache = ROOT / ".mypy_cache" / "ratchet"
    assert problems(ROOT, cache) == []


def test_lint_runs_the_type_checker_on_every_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert sorted(config["files"]) == ["deployments", "flows", "mlops", "tasks"]
    lint = re.search(r"^lint:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert lint and "bin/mypy" in lint.group(1), "make lint must run mypy"
    assert not any(o.get("ignore_errors") and "ignore_missing_imports" in o
                   for o in config.get("overrides", [])), "keep the ratchet list a list of its own"


PLANTED = '''
[tool.mypy]
python_version = "3.11"
files = ["pkg"]

[[tool.mypy.overrides]]
module = [
    "pkg.clean",  # 1 error
    "pkg.dirty",  # 1 error
    "pkg.worse",  # 1 error
]
ignore_errors = true
'''


def test_ratchet_fails_on_a_planted_clean_module_and_a_planted_new_error(tmp_path):
    (tmp_path / "pyproject.toml").write_text(PLANTED)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "clean.py").write_text("x: int = 1\n")
    (tmp_path / "pkg" / "dirty.py").write_text('x: int = "one"\n')
    (tmp_path / "pkg" / "worse.py").write_text('x: int = "one"\ny: str = 2\n')
    assert problems(tmp_path, tmp_path / "cache") == [
        "pkg.clean: type-clean now, take it off the ratchet list",
        "pkg.worse: 2 type errors, the list allows 1",
    ]


def test_ratchet_entries_need_their_count():
    with pytest.raises(AssertionError, match="pkg.dirty"):
        ratchet(PLANTED.replace('"pkg.dirty",  # 1 error', '"pkg.dirty",'))


def test_synced_passes_a_value_and_refuses_a_coroutine():
    from tasks.core.synced import synced

    assert synced(3) == 3

    async def later() -> int:
        return 3

    pending = later()
    with pytest.raises(TypeError, match="async code"):
        synced(pending)
    assert pending.cr_frame is None  # closed: no "never awaited" warning
