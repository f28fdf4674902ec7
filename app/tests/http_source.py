"""A local HTTP server on 127.0.0.1 standing in for the remote servers URL transfers fetch from:
honest, lying about sizes, hostile file names, errors, and bodies held back mid-download."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Paused:
    """A body sent in two parts: `head`, then `tail` once the test calls `released.set()`.
    `sending` is set when the head is out, so a test can act while a download is under way."""

    head: bytes
    tail: bytes
    sending: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)


class Routes(dict[str, tuple[int, dict[str, str], bytes | Paused]]):
    """path -> (status, headers, body); a body is sent chunked when headers lack Content-Length;
    a Paused body always goes with its Content-Length."""


@contextlib.contextmanager
def serving() -> Iterator[tuple[str, Routes]]:
    """(base URL, routes): the test fills in routes while the server runs."""
    routes = Routes()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            status, headers, body = routes.get(self.path, (404, {}, b"not here"))
            if isinstance(body, Paused):
                self._send_paused(status, headers, body)
                return
            self.send_response(status)
            chunked = "Content-Length" not in headers and status == 200
            for key, value in headers.items():
                self.send_header(key, value)
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            elif "Content-Length" not in headers:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if chunked:
                for start in range(0, len(body), 65536):
                    piece = body[start : start + 65536]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.wfile.write(body)

        def _send_paused(self, status: int, headers: dict[str, str], body: Paused) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body.head) + len(body.tail)))
            self.end_headers()
            self.wfile.write(body.head)
            self.wfile.flush()
            body.sending.set()
            # A test that never releases gets a download cut short, not a server hung forever.
            if body.released.wait(timeout=120):
                self.wfile.write(body.tail)

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            # The fetcher hangs up on purpose when a download passes its size limit.
            pass

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", routes
    finally:
        server.shutdown()
        server.server_close()
