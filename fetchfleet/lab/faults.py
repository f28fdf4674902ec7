"""Faults to inject into lab hosts: cut and heal the network, fill and free the disk."""

from __future__ import annotations

import contextlib
import os
import time

from fetchfleet.lab.host import _ssh_ready
from fetchfleet.lab.model import Lab, LabError, is_mounted, run
from fetchfleet.lab.network import veth


def cut_network(lab: Lab, name: str) -> None:
    run("ip", "link", "set", veth(name), "down", host=name)


def heal_network(lab: Lab, name: str) -> None:
    """Link up again, and wait (bounded) until the host answers: its networkd reconfigures the
    link when the carrier comes back, which takes a moment after the link is up."""
    run("ip", "link", "set", veth(name), "up", host=name)
    deadline = time.monotonic() + lab.boot_timeout
    while not _ssh_ready(lab, lab.host(name)):
        if time.monotonic() > deadline:
            raise LabError(
                f"does not answer SSH {lab.boot_timeout:.0f}s after its link came back",
                name,
                "look closer: fab lab.status",
            )
        time.sleep(0.2)


FILL_FILE = "var/tmp/lab-disk-fill"


def fill_disk(lab: Lab, name: str, leave_bytes: int = 0) -> int:
    """Fill the host's disk until only `leave_bytes` are free; returns bytes written."""
    stat = os.statvfs(lab.disk_mount(name))
    free = stat.f_bavail * stat.f_frsize - leave_bytes
    if free <= 0:
        return 0
    path = lab.root(name) / FILL_FILE
    # ENOSPC near the end is fine: the disk is then as full as it gets, which is the point.
    with path.open("ab") as fh, contextlib.suppress(OSError):
        os.posix_fallocate(fh.fileno(), path.stat().st_size, free)
    return free


def free_disk(lab: Lab, name: str) -> None:
    (lab.root(name) / FILL_FILE).unlink(missing_ok=True)


def disk_usage(lab: Lab, name: str) -> tuple[int, int] | None:
    if not is_mounted(lab.disk_mount(name)):
        return None
    stat = os.statvfs(lab.disk_mount(name))
    total = stat.f_blocks * stat.f_frsize
    return total - stat.f_bavail * stat.f_frsize, total
