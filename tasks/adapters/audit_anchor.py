"""Where an audit chain's head is kept outside the MLflow store, so that whoever can write the
store cannot cut or replace the chain unnoticed: a Prefect variable on the Prefect server (when
PREFECT_API_URL is set), and a file under MLOPS_HOME (always; only as safe as the machine it is
on). One anchor per model and store: the name carries a digest of both."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import urllib.parse
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from tasks.core.errors import RegistryError
from tasks.core.plain_http import NeedsClient, NoAnswer, request_json

VARIABLE = "mlops-audit-head-{model}-{digest}"


class Anchor(Protocol):
    where: str

    def read(self) -> dict[str, str] | None: ...

    def write(self, head: dict[str, str]) -> None: ...


def store_id(uri: str) -> str:
    """The store a chain lives in, as its tracking URI without credentials or query."""
    parts = urlsplit(uri)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _digest(model: str, store: str) -> str:
    return hashlib.sha256(f"{store}\n{model}".encode()).hexdigest()[:10]


class FileAnchor:
    """A JSON file under MLOPS_HOME/audit-anchors, replaced atomically."""

    def __init__(self, home: Path, model: str, store: str):
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", model)
        self.path = home / "audit-anchors" / f"{safe}-{_digest(model, store)}.json"
        self.where = f"file {self.path}"

    def read(self) -> dict[str, str] | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise RegistryError(f"the audit anchor {self.path} is unreadable: {exc}") from None

    def write(self, head: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".anchor-")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(head, fh, sort_keys=True)
            os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


class PrefectAnchor:
    """A Prefect variable on the Prefect server (names allow only a-z, 0-9, - and _)."""

    def __init__(self, model: str, store: str, api_url: str | None = None):
        safe = re.sub(r"[^a-z0-9_-]", "_", model.lower())
        self.name = VARIABLE.format(model=safe, digest=_digest(model, store))
        self.where = f"Prefect variable {self.name}"
        self.api_url = api_url

    def read(self) -> dict[str, str] | None:
        """The head, read with one plain GET (no Prefect import); through Prefect's client when
        the server wants credentials, which only Prefect's settings hold."""
        if self.api_url:
            with contextlib.suppress(NeedsClient):
                return self._read_http(self.api_url)
        from prefect.client.orchestration import get_client

        try:
            with get_client(sync_client=True) as client:
                found = client.read_variable_by_name(self.name)
        except Exception as exc:
            raise RegistryError(f"the audit anchor ({self.where}) could not be read: "
                                f"{type(exc).__name__}") from None
        return dict(found.value) if found is not None and isinstance(found.value, dict) else None

    def _read_http(self, api_url: str) -> dict[str, str] | None:
        """The head by one GET; NeedsClient when the server wants credentials."""
        url = f"{api_url.rstrip('/')}/variables/name/{urllib.parse.quote(self.name)}"
        try:
            found = request_json(url)
        except NoAnswer as exc:
            why = f"HTTP {exc.status}" if exc.status is not None else type(exc.cause).__name__
            raise RegistryError(f"the audit anchor ({self.where}) could not be read: {why}"
                                ) from None
        value = found.get("value") if isinstance(found, dict) else None
        return dict(value) if isinstance(value, dict) else None

    def write(self, head: dict[str, str]) -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import VariableCreate, VariableUpdate

        with get_client(sync_client=True) as client:
            if client.read_variable_by_name(self.name) is None:
                client.create_variable(VariableCreate(name=self.name, value=head,
                                                      tags=["mlops-audit"]))
            else:
                client.update_variable(VariableUpdate(name=self.name, value=head))


def anchors(home: Path, prefect_api_url: str | None, model: str, uri: str) -> list[Anchor]:
    """Every anchor this process can reach for the model's chain in the store at `uri`."""
    store = store_id(uri)
    found: list[Anchor] = [FileAnchor(home, model, store)]
    if prefect_api_url:
        found.append(PrefectAnchor(model, store, prefect_api_url))
    return found
