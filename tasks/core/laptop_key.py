"""A laptop's own audit key: made once under MLOPS_HOME, readable by its owner only. It signs the
records of the laptop's own store (a file store or the local stack's server) and proves what
that laptop did, nothing more; a shared store needs MLOPS_AUDIT_KEY."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def laptop_key(home: Path) -> str:
    path = home / "audit.key"
    with contextlib.suppress(FileExistsError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_text().strip()
