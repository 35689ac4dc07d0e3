"""GitLab's MLflow API rules the adapter follows: names, versions, tags, and calls GitLab does
not route (read from gitlabhq: lib/api/ml/mlflow/*, app/models/ml/*, lib/gitlab/regex.rb)."""

from __future__ import annotations

import functools
import re
from typing import Any, TypeVar, cast
from urllib.parse import urlparse

from tasks.core.errors import RegistryError
from tasks.core.redact import redact

_T = TypeVar("_T")

GITLAB_MLFLOW = re.compile(r"/api/v4/projects/(?P<project>[^/]+)/ml/mlflow/?$")
MODEL_EXPERIMENT = "[model]"  # app/models/ml/model.rb EXPERIMENT_NAME_PREFIX
# lib/gitlab/regex.rb ml_model_file_name_regex: what a package file may be called
NOT_IN_FILE_NAME = re.compile(r"[^A-Za-z0-9._\-+ ]")
MAX_TAG_KEY, MAX_TAG_VALUE = 255, 5000  # model_version_metadata.rb
_UNKNOWN_ROUTE = re.compile(r"endpoint (?P<endpoint>\S+) failed with error code 404|"
                            r"'error': '404 Not Found'|404 Client Error: Not Found for url: "
                            r"(?P<url>\S+)")


def is_gitlab_mlflow(uri: str) -> bool:
    return bool(GITLAB_MLFLOW.search(uri.split("?")[0]))


def model_experiment(name: str) -> str:
    """The experiment GitLab creates with a model; the runs it can promote to versions."""
    return f"{MODEL_EXPERIMENT}{name}"


def same_host(server_url: str | None, uri: str) -> bool:
    """Whether the tracking URI is on the CI's GitLab (CI_SERVER_URL)."""
    return bool(server_url) and (urlparse(server_url).hostname or "").lower() == (
        urlparse(uri).hostname or "").lower()


def flat_name(artifact_path: str | None, name: str) -> str:
    """GitLab packages hold flat file names of a few characters: `plots/roc (1).png` →
    `plots-roc _1_.png`."""
    full = f"{artifact_path.strip('/')}/{name}" if artifact_path else name
    return NOT_IN_FILE_NAME.sub("_", full.replace("/", "-"))


def semver_key(version: str) -> tuple[int, int, int]:
    parts = [int(p) for p in re.findall(r"\d+", version)[:3]]
    return tuple(parts + [0] * (3 - len(parts)))  # type: ignore[return-value]


def next_patch(latest: str | None) -> str:
    if latest is None:
        return "1.0.0"
    major, minor, patch = semver_key(latest)
    return f"{major}.{minor}.{patch + 1}"


def version_tags(tags: dict[str, str]) -> dict[str, str]:
    """Version tags as GitLab keeps them: a value is required, keys ≤255, values ≤5,000."""
    return {k[:MAX_TAG_KEY]: (v if len(v) <= MAX_TAG_VALUE else v[:MAX_TAG_VALUE - 1] + "…")
            for k, v in tags.items() if k and v not in (None, "")}


def gitlab_message(exc: Exception) -> str:
    """GitLab's refusal as text: its `message` is a string, a list of strings, or absent."""
    message = (getattr(exc, "json", None) or {}).get("message")
    if isinstance(message, list):
        return "; ".join(str(m) for m in message)
    return str(message) if message else redact(str(exc).splitlines()[0])


class UnsupportedByGitLab(RegistryError):
    """A call GitLab's MLflow API does not implement."""


class GuardedClient:
    """An MlflowClient whose calls that GitLab does not route fail with one line naming them."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            try:
                return attr(*args, **kwargs)
            except Exception as exc:
                found = _UNKNOWN_ROUTE.search(str(exc))
                if found is None:
                    raise
                where = found.group("endpoint") or redact(found.group("url") or "")
                raise UnsupportedByGitLab(
                    f"GitLab's MLflow API does not support {name}"
                    + (f" ({where.rstrip('.')} answered 404 Not Found)" if where else "")
                    + "; use an MLflow tracking server for this") from None

        return call


def guarded(client: _T) -> _T:
    """`client` behind a GuardedClient, typed as the client itself (its own signatures kept)."""
    return cast(_T, GuardedClient(client))
