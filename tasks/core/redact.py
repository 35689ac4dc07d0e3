"""Secrets never leave the process in text: one redaction for errors, logs, tags and messages."""

from __future__ import annotations

import re

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)
_QUERY_SECRETS = re.compile(
    r"(?P<key>[?&;](?:[a-z0-9_-]*(?:token|secret|password|passwd|pwd|signature|sig|api[_-]?key|"
    r"access[_-]?key|auth))=)[^&#\s\"']+", re.IGNORECASE)
_HEADER_SECRETS = re.compile(
    r"(?P<key>(?:authorization|private-token|job-token|x-api-key)\s*[:=]\s*(?:bearer\s+)?)"
    r"[^\s\"',}]+", re.IGNORECASE)


def redact(text: str) -> str:
    """Hide credentials: user:password in URLs, tokens in query strings and auth headers."""
    text = _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)
    text = _QUERY_SECRETS.sub(r"\g<key>***", text)
    return _HEADER_SECRETS.sub(r"\g<key>***", text)
