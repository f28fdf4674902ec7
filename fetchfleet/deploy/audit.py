"""The audit log: one JSON line per action (who, when, what, release, previous, result, why, how
long) on the control machine (`/var/lib/fetchfleet/audit/<env>.jsonl`) and on every app host
(`<app_root>/revisions.log`)."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable, Iterable
from pathlib import Path

from fetchfleet import remote
from fetchfleet.deploy.lock import now_iso, who
from fetchfleet.errors import FleetError
from fetchfleet.inventory import Host
from fetchfleet.remote import Local, Runner, parallel
from fetchfleet.settings import setting

AUDIT_DIR = Path(os.environ.get("FETCHFLEET_AUDIT_DIR", "/var/lib/fetchfleet/audit"))


def audit_record(
    env: str,
    action: str,
    release: str,
    result: str,
    previous: str | None = None,
    message: str = "",
    host: str | None = None,
    seconds: float | None = None,
    detail: str = "",
) -> dict:
    record = {
        "time": now_iso(),
        "env": env,
        "who": who(),
        "action": action,
        "release": release,
        "previous": previous,
        "result": result,
        "message": message,
    }
    if host:
        record["host"] = host
    if seconds is not None:
        record["seconds"] = round(seconds, 1)
    if detail:
        record["detail"] = detail[-500:]
    return record


def append_audit(runner: Runner, path: str, record: dict) -> None:
    runner.run(f"cat >> {shlex.quote(path)}", stdin=json.dumps(record) + "\n")


def control_audit_path(env: str, directory: Path | None = None) -> Path:
    return (directory or AUDIT_DIR) / f"{env}.jsonl"


def read_audit(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def host_log(host: Host) -> str:
    return f"{setting(host, 'app_root')}/revisions.log"


def audit(
    env: str,
    record: dict,
    hosts: Iterable[Host] = (),
    connect: Callable[[Host], Runner] = remote.connect,
) -> None:
    """On the control machine always; on the given hosts when they answer (an unreachable host
    is noted in the control machine's record instead)."""
    path = control_audit_path(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    hosts = list(hosts)
    try:
        parallel(lambda h: append_audit(connect(h), host_log(h), {**record, "host": h.name}), hosts)
    except FleetError as err:
        record = {**record, "audit": f"not on every host: {err.what[:120]}"}
    append_audit(Local(), str(path), record)
