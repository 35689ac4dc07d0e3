"""One JSON request over plain HTTP (urllib, no client library), for reads that must stay cheap:
the Prefect server's REST API (`mlops status`, the audit anchor). A 404 is None; a server asking
for credentials raises NeedsClient (read through the service's own client, which holds them);
anything else raises NoAnswer, from which the caller writes its one error line. Imports nothing
of the project, so every adapter can use it without making tasks/ deeper."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class NeedsClient(Exception):
    """The server wants credentials (HTTP 401 or 403): read through the service's own client."""


class NoAnswer(Exception):
    """No JSON came back: `status` is the HTTP status the server answered (None when it did not
    answer, or answered something other than JSON), `cause` what urllib or json raised."""

    def __init__(self, status: int | None, cause: Exception):
        super().__init__(status, type(cause).__name__)
        self.status = status
        self.cause = cause


def request_json(url: str, body: dict[str, Any] | None = None, timeout_s: float = 30) -> Any:
    """GET `url` (no body) or POST the body as JSON; the answer decoded (an empty one as None),
    None for 404."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data,
        headers={"Accept": "application/json",
                 **({"Content-Type": "application/json"} if data is not None else {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        if exc.code in (401, 403):
            raise NeedsClient(exc.code) from None
        raise NoAnswer(exc.code, exc) from None
    except (OSError, ValueError) as exc:
        raise NoAnswer(None, exc) from None
