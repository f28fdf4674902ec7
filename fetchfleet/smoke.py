"""`fab smoke`: after a deploy, the service answers a user through the load balancer.

What a person would try first, in order, each check timed:

1. `/version`, asked several times so every web host behind the balancer is likely to answer,
   names the release just deployed (every answer, not just one);
2. `/healthz` answers 200 with status "ok" ("degraded" — broker or search down — fails unless
   allowed: a release that cannot reach Solr is not one to promote);
3. a new user signs up, logs in with the same password, `/api/me` knows them by the new token,
   and their (empty) file list answers.

The smoke user is `smoke-<time>-<random>@smoke.invalid`, one per run, never reused: a sign-up
that collides with an earlier run's would test nothing. Talks HTTP with fetchfleet.api only.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from fetchfleet import api
from fetchfleet.inventory import Fleet, InventoryError
from fetchfleet.output import Clock, Progress, table

VERSION_PROBES = 6


class SmokeError(Exception):
    """The smoke test failed: the table of checks, the failed ones first named."""


@dataclass
class Check:
    name: str
    ok: bool
    seconds: float
    detail: str


def balancer_url(fleet: Fleet) -> str:
    """The service's address in an inventory: its first load balancer (group loadbalancers)."""
    balancers = fleet.group("loadbalancers")
    if not balancers:
        raise InventoryError(f"inventory {fleet.name} has no host in group loadbalancers")
    port = int(balancers[0].vars.get("nginx_lb_port", 80))
    return f"http://{balancers[0].address}{'' if port == 80 else f':{port}'}"


def smoke_email(now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dt%H%M%S")
    return f"smoke-{stamp}-{secrets.token_hex(4)}@smoke.invalid"


def _body(resp: api.Response) -> str:
    return resp.body[:200].decode(errors="replace").strip()


def _json(resp: api.Response) -> dict:
    try:
        value = resp.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def check_version(base: str, release: str | None, probes: int = VERSION_PROBES) -> str:
    seen: list[str] = []
    for _ in range(probes):
        resp = api.call(base, "GET", "/version")
        if resp.status != 200:
            raise SmokeError(f"GET /version answered {resp.status}: {_body(resp)}")
        seen.append(str(_json(resp).get("release")))
    names = sorted(set(seen))
    if release is not None and names != [release]:
        raise SmokeError(f"expected release {release}, {probes} answers named {', '.join(names)}")
    if len(names) > 1:
        raise SmokeError(f"the web hosts run different releases: {', '.join(names)}")
    return f"{names[0]} ({probes} answers)"


def check_health(base: str, allow_degraded: bool = False) -> str:
    resp = api.call(base, "GET", "/healthz")
    body = _json(resp)
    down = ", ".join(
        f"{name} {c.get('status')}: {str(c.get('error', ''))[:80]}"
        for name, c in sorted(body.get("components", {}).items())
        if c.get("status") != "ok"
    )
    if resp.status != 200:
        raise SmokeError(f"GET /healthz answered {resp.status} ({down or _body(resp)})")
    status = body.get("status")
    if status == "ok" or (status == "degraded" and allow_degraded):
        return f"{status}{f' ({down})' if down else ''}"
    raise SmokeError(f"/healthz says {status!r}: {down or _body(resp)}")


@dataclass
class _User:
    email: str
    password: str
    token: str = ""


def check_signup(base: str, user: _User) -> str:
    resp = api.call(
        base, "POST", "/api/signup", data={"email": user.email, "password": user.password}
    )
    if resp.status != 201:
        raise SmokeError(f"POST /api/signup answered {resp.status}: {_body(resp)}")
    return f"{user.email} (user {_json(resp).get('user', {}).get('id')})"


def check_login(base: str, user: _User) -> str:
    data = {"email": user.email, "password": user.password}
    resp = api.call(base, "POST", "/api/login", data=data)
    token = _json(resp).get("token")
    if resp.status != 200 or not token:
        raise SmokeError(f"POST /api/login answered {resp.status}: {_body(resp)}")
    user.token = str(token)
    me = api.call(base, "GET", "/api/me", token=user.token)
    if me.status != 200 or _json(me).get("email") != user.email:
        raise SmokeError(f"GET /api/me with the new token answered {me.status}: {_body(me)}")
    return "token accepted by /api/me"


def check_files(base: str, user: _User) -> str:
    resp = api.call(base, "GET", "/api/files", token=user.token)
    body = _json(resp)
    if resp.status != 200 or not isinstance(body.get("files"), list):
        raise SmokeError(f"GET /api/files answered {resp.status}: {_body(resp)}")
    return f"{len(body['files'])} files, {len(body.get('dirs', []))} directories"


def _timed(name: str, func: Callable[[], str], checks: list[Check], clock: Clock) -> bool:
    t0 = time.monotonic()
    try:
        detail, ok = func(), True
    except SmokeError as err:
        detail, ok = str(err), False
    except OSError as err:  # no answer at all: refused, reset, timed out
        detail, ok = f"no answer: {err}", False
    checks.append(Check(name, ok, time.monotonic() - t0, detail))
    clock.say(f"{name}: {'ok' if ok else 'FAILED'} — {detail}")
    return ok


def smoke(
    base: str,
    release: str | None = None,
    allow_degraded: bool = False,
    out: Progress = print,
) -> list[Check]:
    """Run every check against `base` (e.g. http://lb/); SmokeError with the table if one fails.
    The user checks run in order and stop at the first failure (each needs the one before)."""
    clock = Clock(out)
    checks: list[Check] = []
    _timed("version", lambda: check_version(base, release), checks, clock)
    _timed("health", lambda: check_health(base, allow_degraded), checks, clock)
    user = _User(smoke_email(), secrets.token_urlsafe(18))
    for name, func in (("sign-up", check_signup), ("log-in", check_login), ("files", check_files)):
        if not _timed(name, lambda f=func: f(base, user), checks, clock):
            break
    failed = [c.name for c in checks if not c.ok]
    if failed:
        raise SmokeError(
            f"smoke test of {base} FAILED ({', '.join(failed)}):\n{summary(checks)}\n"
            "  -> look closer: fab status --env ENV, and the web hosts' /var/log/cloudfetch"
        )
    return checks


def summary(checks: list[Check]) -> str:
    return table(
        [
            {
                "check": c.name,
                "result": "ok" if c.ok else "FAILED",
                "seconds": f"{c.seconds:.2f}",
                "detail": c.detail[:100],
            }
            for c in checks
        ]
    )
