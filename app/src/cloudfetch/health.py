"""/healthz: each dependency checked in parallel with a short timeout.

- database down: "down", HTTP 503 — without it no page, login or download can be served.
- broker or search down: "degraded", HTTP 200 — files can still be listed and downloaded; new
  transfers (503) and search (503) fail with a clear error until they are back.
Transmission is not checked here: only the workers talk to it, never a web request."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kombu import Connection
from sqlalchemy import text

from cloudfetch.search import FileIndex
from cloudfetch.services import Services

TIMEOUT_SECONDS = 1.5


def _database(services: Services) -> None:
    with services.engine.connect() as connection:
        connection.execute(text(f"SET LOCAL statement_timeout = {int(TIMEOUT_SECONDS * 1000)}"))
        connection.execute(text("SELECT 1"))


def _broker(services: Services) -> None:
    with Connection(services.settings.broker_url, connect_timeout=TIMEOUT_SECONDS) as connection:
        connection.connect()


def _search(services: Services) -> None:
    FileIndex.for_settings(services.settings, timeout=TIMEOUT_SECONDS).ping()


CHECKS = {"database": _database, "broker": _broker, "search": _search}


def _run(check, services: Services) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    try:
        check(services)
    except Exception as exc:
        return {
            "status": "down",
            "error": str(exc)[:300] or type(exc).__name__,
            "seconds": round(time.monotonic() - started, 3),
        }
    return {"status": "ok", "seconds": round(time.monotonic() - started, 3)}


def health(services: Services) -> tuple[dict[str, Any], int]:
    with ThreadPoolExecutor(max_workers=len(CHECKS)) as pool:
        futures = {name: pool.submit(_run, check, services) for name, check in CHECKS.items()}
        components = {name: future.result() for name, future in futures.items()}
    if components["database"]["status"] != "ok":
        status, code = "down", 503
    elif any(c["status"] != "ok" for c in components.values()):
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    return {
        "status": status,
        "release": services.settings.release,
        "components": components,
    }, code
