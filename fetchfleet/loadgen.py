"""A bounded load generator for the app behind the load balancer: steady mixed reads and writes.

Used by the deploy tests and the deploy benchmark to prove "zero failed requests": one user signs
up, then `threads` clients each send a fixed cycle — GET /version, GET /api/me, POST /api/tokens (a
row written), GET /api/tokens, DELETE /api/tokens/<id> (a row deleted) — at `rate` requests per
second in total, until stopped or `max_seconds` passed. A request fails when it gets no answer or
an answer other than the one the API promises (5xx, a 4xx, a timeout, a reset connection).
Failures are also counted apart by who answered: `app_errors` are the app's own 500s (its JSON
`internal_error` body: the code ran and failed, as it does without any deploy); every other
failure — no answer, a reset, a 502/503/504 or any page nginx wrote — is `lost`, which is what a
rollout can cause. Only lab addresses are accepted as targets.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field

from fetchfleet import api

LAB_NETWORK = ipaddress.ip_network("10.77.0.0/24")


@dataclass
class Stats:
    sent: int = 0
    failed: int = 0
    app_errors: int = 0
    by_kind: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.sent / self.seconds if self.seconds else 0.0
        return (
            f"{self.sent} sent, {self.failed} failed ({self.lost} lost, {self.app_errors} app 500s) "
            f"in {self.seconds:.1f}s ({rate:.0f} req/s)"
        )

    @property
    def lost(self) -> int:
        return self.failed - self.app_errors


class Load:
    def __init__(self, base: str, rate: float = 40.0, threads: int = 4, max_seconds: float = 600.0):
        host = urllib.parse.urlsplit(base).hostname or ""
        if ipaddress.ip_address(host) not in LAB_NETWORK:
            raise ValueError(f"load is only sent to the lab ({LAB_NETWORK}), not {host}")
        self.base, self.rate, self.threads, self.max_seconds = (
            base.rstrip("/"),
            rate,
            threads,
            max_seconds,
        )
        self.stats = Stats()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._t0 = 0.0
        self.token = ""

    def _record(self, kind: str, ok: bool, detail: str, app_error: bool = False) -> None:
        with self._lock:
            self.stats.sent += 1
            self.stats.by_kind[kind] += 1
            if not ok:
                self.stats.failed += 1
                self.stats.app_errors += app_error
                if len(self.stats.failures) < 20:
                    self.stats.failures.append(
                        f"{time.monotonic() - self._t0:.1f}s {kind}: {detail}"
                    )

    def _call(self, kind: str, method: str, path: str, expect: int, data: dict | None = None):
        try:
            resp = api.call(self.base, method, path, self.token, data, timeout=20)
        except OSError as err:
            self._record(kind, False, f"{type(err).__name__}: {err}")
            return None
        app_error = resp.status == 500 and b'"internal_error"' in resp.body
        ok = resp.status == expect
        self._record(kind, ok, f"HTTP {resp.status} {resp.body[:120]!r}", app_error)
        return resp.body if ok else None

    def _client(self, n: int) -> None:
        interval = self.threads / self.rate
        next_at = time.monotonic() + n * interval / self.threads
        steps = 0
        token_id = None
        while not self._stop.is_set() and time.monotonic() - self._t0 < self.max_seconds:
            delay = next_at - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            next_at += interval
            step = steps % 5
            steps += 1
            if step == 0:
                self._call("GET /version", "GET", "/version", 200)
            elif step == 1:
                self._call("GET /api/me", "GET", "/api/me", 200)
            elif step == 2:
                body = self._call(
                    "POST /api/tokens", "POST", "/api/tokens", 201, {"name": f"load-{n}-{steps}"}
                )
                token_id = None
                if body is not None:
                    listing = self._call("GET /api/tokens", "GET", "/api/tokens", 200)
                    if listing is not None:
                        name = json.loads(body)["name"]
                        mine = [t["id"] for t in json.loads(listing) if t["name"] == name]
                        token_id = mine[-1] if mine else None
            elif step == 3:
                self._call("GET /api/files", "GET", "/api/files", 200)
            elif token_id is not None:
                self._call("DELETE /api/tokens", "DELETE", f"/api/tokens/{token_id}", 204)
                token_id = None

    def start(self) -> Load:
        email = f"load-{secrets.token_hex(5)}@example.com"
        resp = api.call(
            self.base,
            "POST",
            "/api/signup",
            data={"email": email, "password": secrets.token_hex(12)},
            timeout=20,
        )
        if resp.status != 201:
            raise RuntimeError(
                f"load generator could not sign up: HTTP {resp.status} {resp.body[:200]!r}"
            )
        self.token = resp.json()["token"]
        self._t0 = time.monotonic()
        self._workers = [
            threading.Thread(target=self._client, args=(n,), daemon=True)
            for n in range(self.threads)
        ]
        for t in self._workers:
            t.start()
        return self

    def stop(self) -> Stats:
        self._stop.set()
        for t in self._workers:
            t.join()
        self.stats.seconds = time.monotonic() - self._t0
        return self.stats

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
