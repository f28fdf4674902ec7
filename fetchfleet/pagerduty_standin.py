"""A PagerDuty stand-in: the Events API v2 `/v2/enqueue` over HTTPS, for the lab and the tests.

PagerDuty itself cannot be reached from here, and its client (`pagerduty`) only accepts https://
base URLs, so the stand-in serves TLS with a certificate from the lab's CA (`fetchfleet.tls`);
the pager trusts that CA. It answers as the Events API v2 documents: 202
{"status": "success", "message": "Event processed", "dedup_key": ...} for a valid event, 400
{"status": "invalid event", "message": "Event object is invalid", "errors": [...]} otherwise,
and, planned by a test, 429 or 5xx instead (`plan`). It records every request and every event
it accepted, in memory and optionally as JSON lines in a file.

Tests in this process use the Python API; a separate process (`python -m
fetchfleet.pagerduty_standin`) is driven over HTTP on the same port:
GET /_standin/events, GET /_standin/requests, POST /_standin/plan {"statuses": [500, 202]},
POST /_standin/reset.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# make_ca is re-exported: the tests and the lab make the stand-in's CA through this module.
from fetchfleet.tls import Tls, ensure_ca
from fetchfleet.tls import make_ca as make_ca

ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
ROUTING_KEY_LENGTH = 32
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255
MAX_BODY = 512 * 1024
_OPTIONAL_STRINGS = ("timestamp", "component", "group", "class")


def validate_event(event: Any) -> list[str]:
    """What is wrong with an Events API v2 event, as the API's `errors` list would say it."""
    if not isinstance(event, dict):
        return ["Event object is not a JSON object"]
    errors = []
    key = event.get("routing_key")
    if not isinstance(key, str) or len(key) != ROUTING_KEY_LENGTH:
        errors.append(
            f"Length of 'routing_key' is incorrect (should be {ROUTING_KEY_LENGTH} characters)"
        )
    action = event.get("event_action")
    if action not in ACTIONS:
        errors.append(f"'event_action' is invalid (must be one of {', '.join(ACTIONS)})")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or not 0 < len(dedup) <= MAX_DEDUP_KEY):
        errors.append(f"'dedup_key' must be a string of 1 to {MAX_DEDUP_KEY} characters")
    if action in ("acknowledge", "resolve") and not dedup:
        errors.append(f"'dedup_key' is required for event_action {action}")
    if action == "trigger":
        errors.extend(_payload_errors(event.get("payload")))
    for name, required in (("links", "href"), ("images", "src")):
        items = event.get(name, [])
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get(required), str) for i in items
        ):
            errors.append(f"'{name}' must be a list of objects each with '{required}'")
    return errors


def _payload_errors(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or not an object (required for trigger)"]
    errors = []
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        errors.append("'payload.summary' is missing or blank")
    elif len(summary) > MAX_SUMMARY:
        errors.append(f"'payload.summary' is longer than {MAX_SUMMARY} characters")
    source = payload.get("source")
    if not isinstance(source, str) or not source.strip():
        errors.append("'payload.source' is missing or blank")
    if payload.get("severity") not in SEVERITIES:
        errors.append(f"'payload.severity' is invalid (must be one of {', '.join(SEVERITIES)})")
    errors.extend(
        f"'payload.{name}' must be a string"
        for name in _OPTIONAL_STRINGS
        if name in payload and not isinstance(payload[name], str)
    )
    if "custom_details" in payload and not isinstance(payload["custom_details"], dict | str):
        errors.append("'payload.custom_details' must be an object")
    return errors


@dataclass(frozen=True)
class Received:
    """One request to /v2/enqueue: the status answered, the event, and when (monotonic)."""

    status: int
    event: Any
    at: float


class StandIn:
    """The stand-in server, on `host`:`port` (0: a free port), in a thread."""

    def __init__(
        self, tls: Tls, host: str = "127.0.0.1", port: int = 0, record: Path | None = None
    ) -> None:
        self.tls, self.record = tls, record
        self._lock = threading.Lock()
        self._planned: list[int] = []
        self._requests: list[Received] = []
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert, tls.key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"https://{host}:{port}"

    def start(self) -> StandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def plan(self, *statuses: int) -> None:
        """Answer the next requests with these statuses (202 means: process it as usual)."""
        with self._lock:
            self._planned.extend(statuses)

    def reset(self) -> None:
        with self._lock:
            self._planned.clear()
            self._requests.clear()

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._requests)

    @property
    def events(self) -> list[dict[str, Any]]:
        """The events accepted (202), in the order they arrived."""
        return [r.event for r in self.requests if r.status == 202]

    def wait_for(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 60.0
    ) -> dict[str, Any]:
        """The first accepted event that matches; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events:
                if match(event):
                    return event
            time.sleep(0.1)
        raise TimeoutError(f"no matching event within {timeout}s; accepted: {self.events}")

    def answer(self, body: bytes) -> tuple[int, dict[str, Any]]:
        with self._lock:
            planned = self._planned.pop(0) if self._planned else 202
        try:
            event = json.loads(body)
        except ValueError:
            event = body.decode("utf-8", "replace")
        if planned == 429:
            status, reply = (
                429,
                {
                    "status": "throttle event",
                    "message": "Requests for this service are arriving too quickly. Please retry later.",
                },
            )
        elif planned >= 500:
            status, reply = (
                planned,
                {"status": "error", "message": "Internal server error (planned by a test)"},
            )
        else:
            errors = (
                ["Request body is not JSON"] if isinstance(event, str) else validate_event(event)
            )
            if len(body) > MAX_BODY:
                errors.append(f"Event is larger than {MAX_BODY} bytes")
            if errors:
                status, reply = (
                    400,
                    {
                        "status": "invalid event",
                        "message": "Event object is invalid",
                        "errors": errors,
                    },
                )
            else:
                dedup = event.get("dedup_key") or uuid.uuid4().hex
                status, reply = (
                    202,
                    {"status": "success", "message": "Event processed", "dedup_key": dedup},
                )
        self._keep(Received(status, event, time.monotonic()))
        return status, reply

    def _keep(self, received: Received) -> None:
        with self._lock:
            self._requests.append(received)
            if self.record is not None:
                with self.record.open("a") as f:
                    f.write(json.dumps({"status": received.status, "event": received.event}) + "\n")


def _handler(standin: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as two writes: without this, Nagle and delayed ACKs add 40 ms.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/v2/enqueue":
                self._send(*standin.answer(body))
            elif self.path == "/_standin/plan":
                standin.plan(*json.loads(body or b"{}").get("statuses", []))
                self._send(200, {"planned": True})
            elif self.path == "/_standin/reset":
                standin.reset()
                self._send(200, {"reset": True})
            else:
                self._send(404, {"status": "not found", "message": self.path})

        def do_GET(self) -> None:
            if self.path == "/_standin/events":
                self._send(200, {"events": standin.events})
            elif self.path == "/_standin/requests":
                rows = [{"status": r.status, "event": r.event} for r in standin.requests]
                self._send(200, {"requests": rows})
            else:
                self._send(404, {"status": "not found", "message": self.path})

        def _send(self, status: int, reply: dict[str, Any]) -> None:
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pagerduty_standin", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free one)")
    parser.add_argument("--dir", type=Path, required=True, help="CA, certificate and events.jsonl")
    parser.add_argument(
        "--name", action="append", help="address or DNS name in the certificate (default: --host)"
    )
    parser.add_argument(
        "--make-ca",
        action="store_true",
        help="only make the CA and certificate (if missing), then exit",
    )
    args = parser.parse_args(argv)
    tls = ensure_ca(args.dir, args.name or [args.host])
    if args.make_ca:
        print(f"CA {tls.ca_cert}, certificate {tls.cert}")
        return 0
    with StandIn(tls, args.host, args.port, record=args.dir / "events.jsonl") as standin:
        print(f"PagerDuty stand-in on {standin.url} (CA {tls.ca_cert})", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
