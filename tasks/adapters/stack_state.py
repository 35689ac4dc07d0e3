"""What the local stack (`mlops server start`) says it serves: its URLs in `stack.json`, and
whether they answer. Read by the CLI (to point a command at the stack) and by the training flow
(to read the registry through the stack's MLflow server instead of importing MLflow)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from tasks.core.settings import Settings


def healthy(url: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def read_state(stack_dir: Path) -> dict[str, str] | None:
    """The stack's URLs when its Prefect server answers, else None (a quick check per command)."""
    try:
        urls = json.loads((stack_dir / "stack.json").read_text())
    except (OSError, ValueError):
        return None
    api = urls.get("prefect_api_url") if isinstance(urls, dict) else None
    if not api or not healthy(f"{api}/health", timeout_s=2):
        return None
    if urls.get("mlflow_url") and not healthy(f"{urls['mlflow_url']}/health", timeout_s=2):
        urls.pop("mlflow_url")
    return urls


def served_store_url(found: Settings) -> str | None:
    """The local stack's MLflow server when it serves this very store (its stack.json says
    which store it was started on), else None."""
    if not found.use_local_stack or found.tracking_uri.startswith(("http://", "https://")):
        return None
    urls = read_state(found.stack_dir)
    if not urls or not urls.get("mlflow_url") or urls.get("mlflow_store") != found.tracking_uri:
        return None
    return urls["mlflow_url"]
