"""Data locations holding credentials (`http://user:pw@host/…`, `s3://key:secret@bucket/…`, a
token in the query) travel as their redacted form (`http://***@host/…`): flow parameters, run
states, artifacts and MLflow only ever see that. The code that opens the data gets the real
URL back from this process: the one the CLI was given (`hide`), or one listed in
MLOPS_DATA_URLS / the Secret block MLOPS_DATA_URLS_BLOCK names (a worker's flow runs)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Iterator

from tasks.core.errors import ConfigError
from tasks.core.redact import redact, scrubbing

PLACEHOLDER = "***"
DAY = "{date}"  # a location template's day, filled in by the flow (tasks.adapters.sources.fill_date)
_HELD: dict[str, str] = {}  # redacted form -> the location itself, as this process was given it


def hide(location: str) -> str:
    """The location's redacted form (what a flow parameter may carry); the location itself is
    held in this process for `reveal`."""
    public = redact(location)
    if public != location:
        _HELD[public] = location
    return public


def needs_reveal(location: str) -> bool:
    return "://" in location and PLACEHOLDER in location


def reveal(location: str, known: Callable[[], Iterable[str]] = tuple) -> str:
    """The location behind a redacted one (`{date}` templates match their filled-in days): one
    this process was given, else one of `known()` (tasks.core.settings.data_urls: asked only
    then). A location without a placeholder is itself; unknown credentials are a ConfigError."""
    if not needs_reveal(location):
        return location
    for public, real in _HELD.items():
        if (found := _fill(public, real, location)) is not None:
            return found
    for real in known():
        if (found := _fill(redact(real), real, location)) is not None:
            return found
    raise ConfigError(
        f"{location}: this process does not hold its credentials; give the full URL to the "
        "mlops command, or list it in MLOPS_DATA_URLS (or the Secret block MLOPS_DATA_URLS_BLOCK "
        "names) where the flow runs")


@contextlib.contextmanager
def revealed(location: str, known: Callable[[], Iterable[str]] = tuple) -> Iterator[str]:
    """The real location for the code that opens it; errors raised inside leave redacted."""
    with scrubbing():
        yield reveal(location, known)


def _fill(public: str, real: str, location: str) -> str | None:
    if public == location:
        return real
    if DAY not in public:
        return None
    escaped = re.escape(public).replace(re.escape(DAY), "(?P<day>[^/]+?)", 1)
    found = re.fullmatch(escaped.replace(re.escape(DAY), "(?P=day)"), location)
    return real.replace(DAY, found["day"]) if found else None
