"""One action per environment at a time: a lock file on the lock host, with a heartbeat.

The file (created with O_EXCL, so exactly one of two racers wins) says who holds it, from which
control host and pid, since when, for which action and release, and why. The holder refreshes a
heartbeat; a lock whose pid is gone (same control host) or whose heartbeat is old is reported
stale, and `fab deploy.unlock` removes it. Deploys, rollbacks, restarts, converges and database
failovers all take this one lock.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import secrets
import shlex
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from fetchfleet.deploy.errors import DeployError
from fetchfleet.errors import FleetError
from fetchfleet.remote import Runner

STALE_AFTER = 90.0  # a heartbeat older than this means the holder is dead
HEARTBEAT = 10.0
MANUAL = "manual lock"
DEFAULT_LOCK_FILE = "/var/lib/fetchfleet/deploy.lock"


def who() -> str:
    return os.environ.get("FETCHFLEET_DEPLOYER") or f"{getpass.getuser()}@{socket.gethostname()}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class LockInfo:
    env: str
    who: str
    action: str
    release: str
    message: str
    control_host: str
    pid: int
    started: str
    heartbeat: str
    token: str = field(default_factory=lambda: secrets.token_hex(8))

    @classmethod
    def new(cls, env: str, action: str, release: str = "", message: str = "") -> LockInfo:
        t = now_iso()
        return cls(env, who(), action, release, message, socket.gethostname(), os.getpid(), t, t)


def describe_lock(info: LockInfo) -> str:
    what = f"{info.action} {info.release}".strip()
    msg = f' "{info.message}"' if info.message else ""
    return (
        f"{info.who} since {info.started} ({what}{msg}; pid {info.pid} on {info.control_host}, "
        f"heartbeat {info.heartbeat})"
    )


class LockHeld(DeployError):
    """The environment's lock is held: by whom, since when, for what, and whether it is stale."""

    def __init__(self, info: LockInfo, stale: str | None, env: str):
        self.info, self.stale = info, stale
        state = f"STALE ({stale})" if stale else "held"
        super().__init__(
            f"deploy lock of {env} {state}: {describe_lock(info)}",
            step="lock",
            hint=f"if that action is dead: fab deploy.unlock --env {env}" if stale else None,
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_reason(
    info: LockInfo,
    now: datetime | None = None,
    this_host: str | None = None,
    pid_alive: Callable[[int], bool] = _pid_alive,
    stale_after: float = STALE_AFTER,
) -> str | None:
    """Why the lock's holder is dead, or None while it looks alive."""
    if info.action == MANUAL:
        return None  # held by a person until deploy.unlock: no process, no heartbeat to miss
    now = now or datetime.now(UTC)
    this_host = this_host or socket.gethostname()
    if info.control_host == this_host and not pid_alive(info.pid):
        return f"process {info.pid} on {this_host} is gone"
    age = (now - datetime.fromisoformat(info.heartbeat)).total_seconds()
    if age > stale_after:
        return f"no heartbeat for {age:.0f}s (stale after {stale_after:.0f}s)"
    return None


@dataclass
class DeployLock:
    runner: Runner
    path: str
    env: str

    def read(self) -> LockInfo | None:
        proc = self.runner.run(f"cat {shlex.quote(self.path)} 2>/dev/null", check=False)
        if proc.returncode != 0 or not proc.stdout.strip():
            return None
        try:
            return LockInfo(**json.loads(proc.stdout))
        except (TypeError, json.JSONDecodeError) as err:
            raise DeployError(
                f"unreadable deploy lock {self.path}: {proc.stdout[:200]!r}", self.runner.name
            ) from err

    def acquire(self, info: LockInfo) -> LockInfo:
        # noclobber: the shell creates the file with O_EXCL, so exactly one of two racers wins.
        proc = self.runner.run(
            f"set -C; cat > {shlex.quote(self.path)}", stdin=json.dumps(asdict(info)), check=False
        )
        if proc.returncode == 0:
            return info
        held = self.read()
        if held is None:
            raise DeployError(
                f"cannot create the deploy lock {self.path}: {proc.stderr.strip()}",
                self.runner.name,
                "lock",
            )
        raise LockHeld(held, stale_reason(held), self.env)

    def heartbeat(self, info: LockInfo) -> None:
        held = self.read()
        if held is None or held.token != info.token:
            return
        info.heartbeat = now_iso()
        tmp = shlex.quote(self.path + ".new")
        self.runner.run(
            f"cat > {tmp} && mv -f {tmp} {shlex.quote(self.path)}", stdin=json.dumps(asdict(info))
        )

    def release(self, info: LockInfo) -> bool:
        held = self.read()
        if held is None or held.token != info.token:
            return False
        self.runner.run(f"rm -f {shlex.quote(self.path)}")
        return True

    def force_release(self) -> LockInfo | None:
        held = self.read()
        self.runner.run(f"rm -f {shlex.quote(self.path)}")
        return held


class Heartbeat:
    """Refreshes the lock's heartbeat in the background while an action runs."""

    def __init__(self, lock: DeployLock, info: LockInfo, every: float = HEARTBEAT):
        self.lock, self.info, self.every = lock, info, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            # A missed beat only brings staleness closer; the action goes on.
            with contextlib.suppress(FleetError):
                self.lock.heartbeat(self.info)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
