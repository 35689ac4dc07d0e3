"""The one plain-HTTP JSON request (tasks/core/plain_http.py) that the Prefect REST reads and the
audit anchor share: 404 is none, 401/403 sends the caller to the service's own client, anything
else is one error line in the caller's words."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.adapters import audit_anchor, prefect_rest
from tasks.core.errors import RegistryError
from tasks.core.plain_http import NeedsClient, NoAnswer, request_json

ROOT = Path(__file__).resolve().parents[2]


class Answers(http.server.BaseHTTPRequestHandler):
    """/<status>[/...] answers that status; /<status>/empty and /<status>/text answer no JSON."""

    def do_GET(self):
        status = int(self.path.split("/")[1])
        body = (b"" if self.path.endswith("/empty") else b"not json" if
                self.path.endswith("/text") else b'{"value": {"seq": "3"}}')
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_request_json_maps_statuses(server):
    assert request_json(f"{server}/200") == {"value": {"seq": "3"}}
    assert request_json(f"{server}/200", body={"limit": 1}) == {"value": {"seq": "3"}}
    assert request_json(f"{server}/200/empty") is None
    assert request_json(f"{server}/404") is None
    for status in (401, 403):
        with pytest.raises(NeedsClient):
            request_json(f"{server}/{status}")
    with pytest.raises(NoAnswer) as answered:
        request_json(f"{server}/500")
    assert answered.value.status == 500
    with pytest.raises(NoAnswer) as garbled:
        request_json(f"{server}/200/text")
    assert garbled.value.status is None and isinstance(garbled.value.cause, ValueError)
    with pytest.raises(NoAnswer) as silent:
        request_json(closed_port(), timeout_s=5)
    assert silent.value.status is None and isinstance(silent.value.cause, OSError)


def test_both_readers_keep_their_own_error_lines(server):
    anchor = audit_anchor.PrefectAnchor("m", "store")
    with pytest.raises(prefect_rest.PrefectUnavailable, match=r"/500: flows/filter answered "
                                                              r"HTTP 500$"):
        prefect_rest.call(f"{server}/500", "flows/filter")
    with pytest.raises(prefect_rest.PrefectUnavailable, match=r"did not answer flows \(.*\)$"):
        prefect_rest.call(closed_port(), "flows", timeout_s=5)
    with pytest.raises(RegistryError, match=rf"\({anchor.where}\) could not be read: HTTP 500$"):
        anchor._read_http(f"{server}/500")
    with pytest.raises(RegistryError, match=r"could not be read: URLError$"):
        anchor._read_http(closed_port())
    assert anchor._read_http(f"{server}/200") == {"seq": "3"}
    with pytest.raises(NeedsClient):
        prefect_rest.call(f"{server}/401", "flows")


def test_only_the_shared_request_opens_urls():
    """The anchor's GET was a second copy of prefect_rest.call's (issue 26 item 4)."""
    copies = [name for name in ("tasks/adapters/prefect_rest.py", "tasks/adapters/audit_anchor.py")
              if "urlopen" in (ROOT / name).read_text() or "urllib.request" in (ROOT / name).read_text()]
    assert not copies, copies
