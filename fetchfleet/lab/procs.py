"""The processes of a lab host: its systemd-nspawn supervisor and the host's PID 1, recorded with
their start times (a reused pid is never mistaken for the host), and what state that makes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fetchfleet.lab.model import Lab


def _start_time(pid: int) -> str | None:
    """The process's start time (tells a reused pid apart); None when gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


@dataclass(frozen=True)
class Proc:
    pid: int
    start: str

    def alive(self) -> bool:
        return _start_time(self.pid) == self.start

    @classmethod
    def of(cls, pid: int) -> Proc | None:
        start = _start_time(pid)
        return cls(pid, start) if start else None


def _record(lab: Lab, name: str) -> dict[str, Proc]:
    path = lab.host_dir(name) / "run.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: Proc(v["pid"], v["start"]) for k, v in data.items()}


def _save_record(lab: Lab, name: str, procs: dict[str, Proc]) -> None:
    path = lab.host_dir(name) / "run.json"
    path.write_text(json.dumps({k: {"pid": p.pid, "start": p.start} for k, p in procs.items()}))


def _live(lab: Lab, name: str) -> dict[str, Proc]:
    return {k: p for k, p in _record(lab, name).items() if p.alive()}


def host_state(lab: Lab, name: str) -> str:
    """absent (never created), stopped (disk exists, not running) or running."""
    if "nspawn" in _live(lab, name):
        return "running"
    return "stopped" if lab.disk_image(name).exists() else "absent"


def _leader(nspawn: Proc) -> Proc | None:
    """The host's PID 1: nspawn's child that lives in a PID namespace of its own."""
    ours = os.readlink("/proc/self/ns/pid")
    queue = _children(nspawn.pid)
    while queue:
        pid = queue.pop(0)
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/ns/pid") != ours:
                return Proc.of(pid)
        queue += _children(pid)
    return None


def _signal_all(procs: Iterable[Proc], sig: signal.Signals) -> None:
    for proc in procs:
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)


def _wait_dead(procs: Iterable[Proc], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    procs = list(procs)
    while time.monotonic() < deadline:
        if not any(p.alive() for p in procs):
            return True
        time.sleep(0.1)
    return not any(p.alive() for p in procs)
