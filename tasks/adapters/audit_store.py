"""Where the audit chain lives and how one writer at a time is assured, for every backend.

Records are MLflow runs of experiment `audit/<model>` whose params (written once, never
overwritten) hold the record. Deleted runs are read too, so a removal shows. The per-model lock
works across processes, machines and access paths: a registered model `mlops-lock.<model>` in
the store itself, whose creation is the mutex, so a client talking HTTP to a tracking server and
one opening the same database directly (SQLite or PostgreSQL) exclude each other. Its holder
renews a short lease while it holds it, so a holder that vanished frees it within the lease (at
once when it was a process of this machine). Within a process the lock is re-entrant per
thread."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from tasks.core.audit_event import Action
from tasks.core.errors import RegistryError

EXPERIMENT = "audit/{model}"
# actions after which a record's `alias` points at its `to_version` (an empty one removes it);
# an intent counts: the alias moves before the checks that complete it
ABANDONED = Action.PROMOTION_ABANDONED  # an intent whose alias never moved: it stays where it was
MOVES = (Action.CHALLENGER, Action.STAGED, Action.PROMOTION_INTENT, Action.PROMOTED,
         Action.ROLLBACK_INTENT, Action.ROLLED_BACK)
ALL_RUNS = 3  # mlflow.entities.ViewType.ALL: deleted runs too (no MLflow import to read)
_held: dict[tuple[int, str], int] = {}  # (thread, model) -> depth: re-entrant per thread
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
    found = registry.client.get_experiment_by_name(EXPERIMENT.format(model=model))
    if found is None:
        return []
    if found.lifecycle_stage == "deleted":
        return None
    runs, token = [], None
    while True:
        page = registry.client.search_runs([found.experiment_id], max_results=1000,
                                           page_token=token, run_view_type=ALL_RUNS)
        runs.extend(page)
        token = page.token
        if not token or not page:
            break
    return [{**run.data.params,
             **({"deleted": "true"} if run.info.lifecycle_stage == "deleted" else {})}
            for run in runs]


def created(registry: Any, model: str) -> datetime | None:
    """When the store created the trail's experiment (set by the store, not by a client)."""
    found = registry.client.get_experiment_by_name(EXPERIMENT.format(model=model))
    millis = getattr(found, "creation_time", None) if found is not None else None
    return datetime.fromtimestamp(millis / 1000, UTC) if millis else None


def alias_from(records: Sequence[Mapping[str, str]], alias: str) -> str | None:
    """Where a chain (in order) says an alias points: its newest move (an intent abandoned
    because the alias never moved leaves it where it was)."""
    move = newest_move(records, alias)
    if move is None:
        return None
    back = move.get("action") == ABANDONED
    return (move.get("from_version") if back else move.get("to_version")) or None


def newest_move(records: Sequence[Mapping[str, str]], alias: str) -> Mapping[str, str] | None:
    return next((r for r in reversed(records) if r.get("alias") == alias
                 and r.get("action") in (*MOVES, ABANDONED)), None)


def former_champions(records: list[dict[str, str]], alias: str) -> set[str]:
    """Every version a chain (in order) says the alias pointed at after a completed move."""
    return {r["to_version"] for r in records if r.get("action") in (Action.PROMOTED, Action.ROLLED_BACK)
            and r.get("alias", alias) == alias and r.get("to_version")}


@contextlib.contextmanager
def model_lock(registry: Any, model: str, timeout_s: float = 180, ttl_s: float = 90
               ) -> Iterator[None]:
    """One promotion, rollback or audit write per model at a time, across processes, machines
    and access paths (the mutex lives in the store); re-entrant within a thread."""
    holder = (threading.get_ident(), model)
    with _guard:
        depth = _held.get(holder, 0)
        _held[holder] = depth + 1
    try:
        if depth:
            yield
            return
        with _registry_mutex(registry, model, timeout_s, ttl_s):
            yield
    finally:
        with _guard:
            _held[holder] -= 1
            if not _held[holder]:
                del _held[holder]


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
            busy = "database is locked" in str(exc)  # SQLite: another writer, try again
            # MLflow's SQL store, its insert refused as a duplicate, reads the model back to say
            # so and may not see it yet: "not found" means another holder got there first
            if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "INVALID_PARAMETER_VALUE",
                                      "RESOURCE_DOES_NOT_EXIST") and not busy:
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
