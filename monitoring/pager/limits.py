"""munin-limits' own view of every field: DBDIR/limits, which Debian's munin-limits 2.0.73
(Munin::Master::LimitsOld) rewrites at the end of every run, after it has written that run's
messages into the contact's pipe:

    version 2.0.73
    lab;worker1;fetchfleet_supervisor_programs;cloudfetch_worker;state critical
    lab;worker1;fetchfleet_supervisor_programs;cloudfetch_worker;critical Value is 0.00. Critical range (1:) exceeded
    lab;worker1;fetchfleet_supervisor_programs;cloudfetch_web;state ok
    lab;worker1;fetchfleet_supervisor_programs;cloudfetch_web;ok OK

(`GROUP;HOST;SERVICE;FIELD;ATTRIBUTE VALUE`, in no order; a sub-graph's service is more parts,
its last one the name the messages carry.) It holds only the fields that run checked. munin
writes it in place (truncated, then written; no rename): a read that a write overlapped is
refused, and a file caught half written holds whole lines then one cut short, left out.

munin-limits sends a state only when it changes by this file; the pager compares its open
alerts against it (events.reconcile) so a message that never reached it is not an alert open for
ever.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path


class Unreadable(Exception):
    pass


@dataclass(frozen=True)
class Limits:
    states: dict[tuple[str, str, str], frozenset[str]]  # (host, service, field) -> its states
    written: datetime.datetime  # the file's modification time: munin's view is from then

    def says_ok(self, host: str, service: str, field: str) -> bool:
        """True only when munin-limits checked this field in its last run and found it OK."""
        return self.states.get((host, service, field)) == frozenset({"ok"})


def read(path: Path) -> Limits:
    try:
        with open(path, "rb") as f:
            before = os.fstat(f.fileno())
            text = f.read().decode()
            after = os.fstat(f.fileno())
    except (OSError, UnicodeDecodeError) as err:
        raise Unreadable(f"{path}: {err}") from err
    # munin-limits rewrote it meanwhile: the text may be old lines and new ones spliced together.
    if (before.st_mtime_ns, before.st_size) != (after.st_mtime_ns, after.st_size):
        raise Unreadable(f"{path}: munin-limits rewrote it while it was read")
    return Limits(parse(text), datetime.datetime.fromtimestamp(before.st_mtime, datetime.UTC))


def parse(text: str) -> dict[tuple[str, str, str], frozenset[str]]:
    found: dict[tuple[str, str, str], set[str]] = {}
    for line in text.split("\n")[:-1]:  # the last piece is "" or a line cut short
        path, _, value = line.partition(" ")
        parts = path.split(";")
        if len(parts) < 5 or parts[-1] != "state":
            continue
        # Two groups may have a host of the same name: each of its states is kept.
        found.setdefault((parts[1], parts[-3], parts[-2]), set()).add(value.strip())
    return {k: frozenset(v) for k, v in found.items()}
