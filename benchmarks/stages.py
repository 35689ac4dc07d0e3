"""Where one run's seconds go: `mlops …` or the plain script, run in this process with timers.

Each stage's time is exclusive (a stage inside another pauses the outer one), so the rows add
up to the run. Imports are timed where they happen (the outermost `import` statement, whatever
stage it falls in) and shown beside each stage. Timers wrap functions; nothing is sampled, so
the run costs what it costs without them (a few microseconds per import statement).

Usage: python benchmarks/stages.py OUT.json mlops ARGS...    (e.g. mlops train fraud)
       python benchmarks/stages.py OUT.json plain CONFIG.yaml
"""

from __future__ import annotations

import builtins
import functools
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

STARTED = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

seconds: dict[str, float] = defaultdict(float)
imports: dict[str, float] = defaultdict(float)
calls: dict[str, int] = defaultdict(int)
_stack: list[list] = []  # [name, started] of the stages in progress, innermost last
_OUTSIDE = "outside stages (CLI, importing the flow module, summary)"


def _enter(name: str) -> None:
    now = time.perf_counter()
    if _stack:
        seconds[_stack[-1][0]] += now - _stack[-1][1]
    _stack.append([name, now])
    calls[name] += 1


def _leave() -> None:
    now = time.perf_counter()
    name, started = _stack.pop()
    seconds[name] += now - started
    if _stack:
        _stack[-1][1] = now


def stage(name: str, fn):
    @functools.wraps(fn)
    def timed(*args, **kwargs):
        _enter(name)
        try:
            return fn(*args, **kwargs)
        finally:
            _leave()
    timed.__stage__ = True
    return timed


_import = builtins.__import__
_depth = 0


def _timed_import(name, globals=None, locals=None, fromlist=(), level=0):
    global _depth
    if _depth:
        return _import(name, globals, locals, fromlist, level)
    _depth = 1
    started = time.perf_counter()
    try:
        return _import(name, globals, locals, fromlist, level)
    finally:
        imports[_stack[-1][0] if _stack else _OUTSIDE] += time.perf_counter() - started
        _depth = 0
        _patch_loaded()


# (module, attribute, stage): wrapped as soon as the module is loaded, and every module of ours
# that imported the function by name gets the wrapped one
TARGETS = {
    "mlops": [
        ("mlops.training", "_stale", "up-to-date check"),
        ("tasks.adapters.mlflow_registry", "Registry.__init__", "registry open"),
        ("tasks.training.fingerprint", "source_fingerprint", "fingerprint: data"),
        ("tasks.core.lineage", "code_hash", "fingerprint: code"),
    ],
    "plain": [
        ("tasks.training.data", "load_dataset", "load-data"),
        ("tasks.training.validate", "validate_frame", "validate"),
        ("tasks.training.train", "train_model", "train"),
        ("tasks.training.threshold", "with_threshold", "choose-threshold"),
        ("tasks.training.evaluate", "booster_scores", "evaluate: scores"),
        ("tasks.training.metrics", "evaluate_scores", "evaluate: metrics"),
        ("tasks.contracts.explanations", "contributions", "explain (tree SHAP)"),
        ("tasks.training.evaluate", "make_plots", "evaluate: plots"),
        ("tasks.batch.profiles", "reference_profile", "profile"),
        ("tasks.training.gate", "decide", "gate"),
    ],
}
_done: set[tuple[str, str]] = set()
_originals: dict[int, object] = {}
_seen = 0
_mode = "mlops"


def _staged(call, name_of):
    @functools.wraps(call)
    def staged(self, *args, **kwargs):
        return stage(name_of(self), functools.partial(call, self))(*args, **kwargs)
    return staged


def _patch_prefect() -> None:
    """Every task and flow call is a stage named after it (Prefect's overhead included)."""
    flows, tasks = sys.modules.get("prefect.flows"), sys.modules.get("prefect.tasks")
    if tasks is not None and ("prefect.tasks", "Task") not in _done:
        tasks.Task.__call__ = _staged(tasks.Task.__call__, lambda task: f"task {task.name}")
        _done.add(("prefect.tasks", "Task"))
    if flows is not None and ("prefect.flows", "Flow") not in _done:
        flows.Flow.__call__ = _staged(flows.Flow.__call__,
                                      lambda flow: "flow run (Prefect, outside tasks)")
        _done.add(("prefect.flows", "Flow"))


def _patch_loaded() -> None:
    global _seen
    if len(sys.modules) == _seen:
        return
    _seen = len(sys.modules)
    if _mode == "mlops":
        _patch_prefect()
    for module, attr, name in TARGETS[_mode]:
        if (module, attr) in _done or module not in sys.modules:
            continue
        owner, _, method = attr.partition(".")
        target = sys.modules[module]
        if method:
            cls = getattr(target, owner)
            setattr(cls, method, stage(name, getattr(cls, method)))
        else:
            original = getattr(target, attr)
            _originals[id(original)] = stage(name, original)
        _done.add((module, attr))
    if not _originals:
        return
    for mod_name, mod in list(sys.modules.items()):  # rebind names imported before the patch
        if mod is None or not mod_name.startswith(("tasks", "flows", "mlops", "benchmarks",
                                                   "__main__")):
            continue
        for key, value in list(vars(mod).items()):
            if id(value) in _originals and not getattr(value, "__stage__", False):
                setattr(mod, key, _originals[id(value)])


def main() -> None:
    global _mode
    out, _mode, args = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    builtins.__import__ = _timed_import
    status = 0
    _enter(_OUTSIDE)
    try:
        if _mode == "mlops":
            sys.argv = ["mlops", *args]
            from mlops.cli import main as cli

            cli()
        else:
            import runpy

            sys.argv = ["plain_pipeline.py", *args]
            runpy.run_path(str(Path(__file__).with_name("plain_pipeline.py")),
                           run_name="__main__")
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        while _stack:
            _leave()
        builtins.__import__ = _import
    total = time.perf_counter() - STARTED
    out.write_text(json.dumps({"mode": _mode, "args": args, "status": status, "total": total,
                               "seconds": seconds, "imports": imports, "calls": calls},
                              indent=2))
    sys.exit(status)


if __name__ == "__main__":
    main()
