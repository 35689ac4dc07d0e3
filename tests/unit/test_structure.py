"""The shape of the code, kept by a test over the modules' own imports (every `import`, at module
level or inside a function): stages meet through contracts, `tasks/` stays at most four layers
deep, modules stay short, the environment is read in one place."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tasks", "flows", "mlops", "deployments")
MAX_DEPTH = 4
MAX_LINES = 300
# the stages: each imports contracts, core, adapters and shared helpers, never another stage
STAGES = {
    "tasks.training.data", "tasks.training.validate", "tasks.training.planning",
    "tasks.training.train", "tasks.training.evaluate", "tasks.training.gate",
    "tasks.training.tracking", "tasks.training.register", "tasks.training.notebook",
    "tasks.release.staging", "tasks.release.approval", "tasks.release.production",
    "tasks.release.handoff", "tasks.batch.scoring", "tasks.batch.monitoring",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imported(name: str) -> set[str]:
    """The project modules a module imports (a `from package import module` counts as the
    module; a name imported from a module counts as that module)."""
    tree = ast.parse(MODULES[name].read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for target in targets:
            if target in MODULES and MODULES[target].name != "__init__.py":
                found.add(target)
    found.discard(name)
    return {t for t in found if not any(o != t and o.startswith(t + ".") for o in found)}


@functools.cache
def depth(name: str, seen: tuple[str, ...] = ()) -> int:
    """Modules on the longest import chain that starts here (a leaf is 1)."""
    if name in seen:
        raise AssertionError("import cycle: " + " -> ".join([*seen, name]))
    below = [depth(t, (*seen, name)) for t in imported(name) if t.startswith("tasks.")]
    return 1 + max(below, default=0)


def chain(name: str) -> list[str]:
    """The longest import chain from a module, for the failure message."""
    below = [t for t in imported(name) if t.startswith("tasks.")]
    if not below:
        return [name]
    return [name, *chain(max(below, key=depth))]


TASK_MODULES = sorted(n for n in MODULES if n.startswith("tasks.")
                      and MODULES[n].name != "__init__.py")


def test_tasks_are_at_most_four_layers_deep():
    deepest = max(TASK_MODULES, key=depth)
    assert depth(deepest) <= MAX_DEPTH, " -> ".join(chain(deepest))


def test_no_stage_imports_another_stage():
    crossings = [f"{s} imports {t}" for s in sorted(STAGES) for t in imported(s) if t in STAGES]
    assert set(MODULES) >= STAGES, f"stages moved: {sorted(STAGES - set(MODULES))}"
    assert not crossings, crossings


def test_imports_go_one_way():
    """flows → tasks → (core, contracts, adapters); tasks never import flows, the CLI or the
    deployment glue, and nothing in tasks/ imports a flow."""
    back = [f"{n} imports {t}" for n in TASK_MODULES for t in imported(n)
            if not t.startswith("tasks.")]
    contracts = [f"{n} imports {t}" for n in TASK_MODULES if n.startswith("tasks.contracts.")
                 for t in imported(n) if not t.startswith(("tasks.contracts.", "tasks.core."))]
    assert not back and not contracts, back + contracts


def test_package_inits_import_nothing():
    """A package's __init__ would be a hidden layer between every importer and its modules."""
    busy = [n for n, p in MODULES.items() if p.name == "__init__.py"
            and any(isinstance(x, ast.Import | ast.ImportFrom) for x in ast.walk(ast.parse(p.read_text())))]
    assert not busy, busy


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_300_lines(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(ROOT)}: {lines} lines"


def test_the_environment_is_read_in_one_place():
    """os.environ / os.getenv appear only in the settings module (and in the CLI's start, which
    sets the Prefect API URL of the temporary server it starts)."""
    allowed = {"tasks.core.settings", "mlops.local_server"}
    readers = sorted(n for n, p in MODULES.items() if n not in allowed
                     and ("os.environ" in p.read_text() or "os.getenv" in p.read_text()))
    assert not readers, readers


def test_flows_only_wire():
    """Flows define no tasks and build no clients: they call stages by keyword."""
    for name in (n for n in MODULES if n.startswith("flows.")):
        text = MODULES[name].read_text()
        assert "@task" not in text and "MlflowClient" not in text and "gitlab.Gitlab" not in text


def test_every_error_class_is_raised_somewhere():
    """An error class nobody raises is a promise the code does not keep (DriftDetected was one:
    monitoring exits 4 from its report, it never raised it)."""
    from tasks.core import errors

    classes = [n for n, v in vars(errors).items()
               if isinstance(v, type) and issubclass(v, errors.MlopsError) and v is not errors.MlopsError
               and not any(issubclass(o, v) and o is not v for o in vars(errors).values()
                           if isinstance(o, type))]
    source = "\n".join(p.read_text() for p in MODULES.values())
    unused = [c for c in classes if f"raise {c}(" not in source and f"{c}(" not in source]
    assert not unused, unused


def test_the_gitlab_registry_only_overrides_what_gitlab_does_differently():
    """GitLabRegistry.get_version used to be a copy of its base class's."""
    from tasks.adapters.gitlab_mlflow import GitLabRegistry
    from tasks.adapters.mlflow_registry import Registry

    copies = [name for name, fn in vars(GitLabRegistry).items()
              if callable(fn) and name in vars(Registry)
              and getattr(fn, "__code__", None) is not None
              and fn.__code__.co_code == vars(Registry)[name].__code__.co_code]
    assert not copies, copies
