"""fetchfleet.api against a real HTTP server on loopback that records what it received."""

from __future__ import annotations

import email.parser
import email.policy
import http.server
import json
import socket
import threading
from typing import ClassVar

import pytest

from fetchfleet import api


class Recorder(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        Recorder.received.append(
            {
                "method": self.command,
                "path": self.path,
                "headers": dict(self.headers.items()),
                "body": self.rfile.read(length),
            }
        )
        status = 404 if self.path.startswith("/missing") else 200
        body = json.dumps({"error": "not_found"} if status == 404 else {"ok": True}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Trace", "abc")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
        pass


@pytest.fixture
def base():
    Recorder.received.clear()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_call_sends_json_and_the_token(base):
    resp = api.call(base, "POST", "/api/tokens", "t0k", {"name": "ci"})
    assert (resp.status, resp.json(), resp.headers["x-trace"]) == (200, {"ok": True}, "abc")
    sent = Recorder.received[-1]
    assert sent["method"] == "POST" and sent["path"] == "/api/tokens"
    assert sent["headers"]["Authorization"] == "Bearer t0k"
    assert sent["headers"]["Content-Type"] == "application/json"
    assert json.loads(sent["body"]) == {"name": "ci"}


def test_call_without_body_or_token_sends_neither(base):
    api.call(base, "GET", "/version")
    sent = Recorder.received[-1]
    assert "Authorization" not in sent["headers"] and "Content-Type" not in sent["headers"]
    assert sent["body"] == b""


def test_an_error_status_is_a_response_not_an_exception(base):
    resp = api.call(base, "DELETE", "/missing/1", "t")
    assert resp.status == 404 and resp.json() == {"error": "not_found"}


def test_a_refused_connection_raises():
    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OSError):
        api.call(f"http://127.0.0.1:{port}", "GET", "/", timeout=2)


def test_upload_is_multipart_with_the_file_bytes_intact(base):
    content = bytes(range(256)) * 3 + b"\r\n--not-a-boundary\r\n"
    resp = api.upload(base, "/api/transfers", "t", "torrent", "x.torrent", content)
    assert resp.status == 200
    sent = Recorder.received[-1]
    header = f"Content-Type: {sent['headers']['Content-Type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + sent["body"])
    assert message.is_multipart()
    (part,) = message.iter_parts()
    assert part.get_param("name", header="content-disposition") == "torrent"
    assert part.get_filename() == "x.torrent"
    assert part.get_payload(decode=True) == content
