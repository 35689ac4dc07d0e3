"""Where the audit chain lives and how one writer at a time is assured, for every backend.

Records are MLflow runs of experiment `audit/<model>` whose params (written once, never
overwritten) hold the record. Deleted runs are read too, so a removal shows. The per-model lock
works across processes and machines: a file lock beside a local store, and for a tracking server
(MLflow or GitLab) a registered model `mlops-lock.<model>` whose creation is the mutex. Its
holder renews a short lease while it holds it, so a holder that vanished frees it within the
lease (at once when it was a process of this machine)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tasks.core.errors import RegistryError

EXPERIMENT = "audit/{model}"
# actions after which a record's `alias` points at its `to_version` (an empty one removes it);
# an intent counts: the alias moves before the checks that complete it
MOVES = ("challenger", "staged", "promotion-intent", "promoted", "rollback-intent", "rolled-back")
_held: dict[str, int] = {}  # model -> depth: the lock is re-entrant within one process
_guard = threading.Lock()


def append(registry: Any, model: str, record: dict[str, str]) -> None:
    """Store one sealed record; a value the store would clip is refused, never cut."""
    too_long = [k for k, v in record.items() if len(v) > registry.max_param_chars]
    if too_long:
        raise RegistryError(f"audit record field(s) {', '.join(too_long)} longer than the "
                            f"store's {registry.max_param_chars} characters")
    tags = {"mlops.audit": "true", "model": model, "mlops.audit.seq": record["seq"]}
    with registry.run(EXPERIMENT.format(model=model), f"{record['seq']}-{record['action']}",
                      tags) as run_id:
        registry.log_run(run_id, params=record)


def read(registry: Any, model: str) -> list[dict[str, str]] | None:
    """Every record, deleted ones marked `deleted`, in storage order; None when the trail itself
    is gone (its experiment deleted)."""
    from mlflow.entities import ViewType

    found = registry.client.get_experiment_by_name(EXPERIMENT.format(model=model))
    if found is None:
        return []
    if found.lifecycle_stage == "deleted":
        return None
    runs, token = [], None
    while True:
        page = registry.client.search_runs([found.experiment_id], max_results=1000,
                                           page_token=token, run_view_type=ViewType.ALL)
        runs.extend(page)
        token = page.token
        if not token or not page:
            break
    return [{**run.data.params,
             **({"deleted": "true"} if run.info.lifecycle_stage == "deleted" else {})}
            for run in runs]


def alias_from(records: list[dict[str, str]], alias: str) -> str | None:
    """Where a chain (in order) says an alias points: its newest move."""
    for record in reversed(records):
        if record.get("alias") == alias and record.get("action") in MOVES:
            return record.get("to_version") or None
    return None


def former_champions(records: list[dict[str, str]], alias: str) -> set[str]:
    """Every version a chain (in order) says the alias pointed at after a completed move."""
    return {r["to_version"] for r in records if r.get("action") in ("promoted", "rolled-back")
            and r.get("alias", alias) == alias and r.get("to_version")}


@contextlib.contextmanager
def model_lock(registry: Any, model: str, timeout_s: float = 180, ttl_s: float = 90
               ) -> Iterator[None]:
    """One promotion, rollback or audit write per model at a time, across processes and
    machines; re-entrant within a process."""
    with _guard:
        depth = _held.get(model, 0)
        _held[model] = depth + 1
    try:
        if depth:
            yield
            return
        uri = registry.uri
        if uri.startswith(("http://", "https://")):
            with _registry_mutex(registry, model, timeout_s, ttl_s):
                yield
        else:
            with _file_lock(_lock_path(uri, model), timeout_s):
                yield
    finally:
        with _guard:
            _held[model] -= 1
            if not _held[model]:
                del _held[model]


def _lock_path(uri: str, model: str) -> Path:
    base = Path(uri.removeprefix("sqlite:///").removeprefix("file://")).expanduser()
    folder = (base.parent if base.suffix else base) / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{model}.lock"


@contextlib.contextmanager
def _file_lock(path: Path, timeout_s: float) -> Iterator[None]:
    deadline = time.monotonic() + timeout_s
    with open(path, "a+") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RegistryError(f"another promotion of {path.stem} holds its lock "
                                        f"({path}); try again when it has finished") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _registry_mutex(registry: Any, model: str, timeout_s: float, ttl_s: float
                    ) -> Iterator[None]:
    from mlflow.exceptions import MlflowException

    name = f"mlops-lock.{model}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            registry.client.create_registered_model(name, description=_lease(ttl_s))
            break
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "INVALID_PARAMETER_VALUE"):
                raise
        if _abandoned(registry, name):
            with contextlib.suppress(MlflowException):
                registry.client.delete_registered_model(name)
            continue
        if time.monotonic() > deadline:
            raise RegistryError(f"another promotion of {model} holds its lock (registered model "
                                f"{name}); try again when it has finished")
        time.sleep(1)
    held = threading.Event()

    def renew() -> None:  # the lease lives as long as this process holds the lock
        while not held.wait(ttl_s / 3):
            with contextlib.suppress(Exception):
                registry.client.update_registered_model(name, description=_lease(ttl_s))

    threading.Thread(target=renew, name="mlops-lock-lease", daemon=True).start()
    try:
        yield
    finally:
        held.set()
        with contextlib.suppress(MlflowException):
            registry.client.delete_registered_model(name)


def _lease(ttl_s: float) -> str:
    expires = (datetime.now(UTC) + timedelta(seconds=ttl_s)).isoformat(timespec="seconds")
    return f"{expires} {socket.gethostname()}:{os.getpid()}"


def _abandoned(registry: Any, name: str) -> bool:
    """The holder's lease ran out (it stopped renewing it), or it was a process of this machine
    that no longer exists."""
    from mlflow.exceptions import MlflowException

    try:
        expires, holder = (registry.client.get_registered_model(name).description or "").split()
        host, pid = holder.rsplit(":", 1)
        if datetime.now(UTC) > datetime.fromisoformat(expires):
            return True
    except (MlflowException, ValueError):
        return False
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False
