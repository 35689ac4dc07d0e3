"""Secrets never leave the process in text: one redaction for errors, logs, tags and messages.

Applied where text leaves: every log record (`RedactFilter` on every handler), the CLI's error
line, Slack, GitLab notes and wiki rows, MLflow params, tags and text artifacts, and the errors
the MLflow client raises (`scrubbing`), so a Prefect state message carries no credential either.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar, cast

_T = TypeVar("_T")

# user:password up to the last @ before the path (an @ in the password), or a password holding
# a / (AWS secret keys do) up to its @; a port followed by a path is not a password
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?:[^/\s]*|[^/@\s:]*:(?!\d+/)[^@\s]*)@", re.IGNORECASE)
_QUERY_SECRETS = re.compile(
    r"(?P<key>[?&;](?:[a-z0-9_-]*(?:token|secret|password|passwd|pwd|signature|sig|api[_-]?key|"
    r"access[_-]?key|key|auth|credentials?|jwt))=)[^&#\s\"']+", re.IGNORECASE)
_HEADER_SECRETS = re.compile(
    r"(?P<key>(?:authorization|private-token|job-token|x-api-key)\s*[:=]\s*(?:bearer\s+)?)"
    r"[^\s\"',}]+", re.IGNORECASE)


def redact(text: str) -> str:
    """Hide credentials: user:password in URLs, tokens in query strings and auth headers."""
    text = _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)
    text = _QUERY_SECRETS.sub(r"\g<key>***", text)
    return _HEADER_SECRETS.sub(r"\g<key>***", text)


def redact_values(values: Mapping[str, object]) -> dict[str, str]:
    """Params or tags as strings, each redacted."""
    return {key: redact(str(value)) for key, value in values.items()}


# -- logging ------------------------------------------------------------------------------------
NO_EXCEPTION = "NoneType: None"  # logging's rendering of exc_info=True outside an except block


class RedactFilter(logging.Filter):
    """On every handler (mlops/logging.yml; `install_log_redaction` elsewhere): the record's
    message, traceback and stack are redacted before any handler formats or sends it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it as it would anyway
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[0] is None or record.exc_text == NO_EXCEPTION:
            # exc_info=True with no exception: how Prefect logs a Failed state a task returned
            record.exc_info = record.exc_text = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            # the exception object would carry the secret to a formatter that renders it itself
            record.exc_text, record.exc_info = redact(record.exc_text), None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install_log_redaction() -> int:
    """Put a RedactFilter on every handler configured in this process (idempotent), for
    processes whose logging was set up without mlops/logging.yml (a worker's flow run).
    Returns how many handlers got one."""
    loggers = [logging.getLogger(), *(logger for logger in logging.Logger.manager.loggerDict
                                      .values() if isinstance(logger, logging.Logger))]
    added = 0
    for handler in {h for logger in loggers for h in logger.handlers}:
        if not any(isinstance(f, RedactFilter) for f in handler.filters):
            handler.addFilter(RedactFilter())
            added += 1
    return added


# -- errors -------------------------------------------------------------------------------------
def scrub(exc: BaseException) -> BaseException:
    """Redact an exception's message in place, and those of its causes; its type stays."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.args = tuple(redact(a) if isinstance(a, str) else a for a in current.args)
        if isinstance(getattr(current, "message", None), str):
            with contextlib.suppress(AttributeError):
                current.message = redact(current.message)  # type: ignore[attr-defined]
        current = current.__cause__ or current.__context__
    return exc


@contextlib.contextmanager
def scrubbing() -> Iterator[None]:
    """Errors raised inside leave with secrets redacted from their messages."""
    try:
        yield
    except Exception as exc:
        scrub(exc)
        raise


class Scrubbed:
    """A client whose calls raise their errors scrubbed (same exception types, so callers that
    check error codes keep working). The MLflow client names its URL, credentials included."""

    def __init__(self, target: object):
        self._target = target

    def __getattr__(self, name: str) -> Any:
        if name == "_target":  # not yet set (a copy being made): no recursion
            raise AttributeError(name)
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            with scrubbing():
                return attr(*args, **kwargs)

        return call


def scrubbed(target: _T) -> _T:
    """`target` behind a Scrubbed proxy, typed as `target` itself: callers keep the client's own
    signatures (a bare Scrubbed would turn every call into Any and hide every type error)."""
    return cast(_T, Scrubbed(target))
