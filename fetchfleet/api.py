"""A small client of cloudfetch's HTTP API (urllib): what the load generator, the benchmarks and
the lab tests use to talk to the app through the load balancer, the way a user's client would."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self):  # type: ignore[no-untyped-def]
        return json.loads(self.body)


def _send(request: urllib.request.Request, timeout: float) -> Response:
    """An HTTP error status is a Response like any other; only a failed connection raises."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return Response(
                resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
            )
    except urllib.error.HTTPError as err:
        return Response(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())


def _headers(token: str | None, content_type: str | None) -> dict[str, str]:
    headers = {"Content-Type": content_type} if content_type else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def call(
    base: str,
    method: str,
    path: str,
    token: str | None = None,
    data: dict | None = None,
    timeout: float = 15.0,
) -> Response:
    """One request with an optional JSON body and bearer token (redirects of non-GETs are not
    followed: urllib hands them back as the Response)."""
    body = json.dumps(data).encode() if data is not None else None
    content_type = "application/json" if data is not None else None
    request = urllib.request.Request(
        base + path, data=body, headers=_headers(token, content_type), method=method
    )
    return _send(request, timeout)


def upload(
    base: str,
    path: str,
    token: str | None,
    field: str,
    filename: str,
    content: bytes,
    timeout: float = 15.0,
) -> Response:
    """POST one file as multipart/form-data field `field` (how a browser uploads a .torrent)."""
    boundary = secrets.token_hex(16)
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    content_type = f"multipart/form-data; boundary={boundary}"
    request = urllib.request.Request(
        base + path, data=body, headers=_headers(token, content_type), method="POST"
    )
    return _send(request, timeout)
