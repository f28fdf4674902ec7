"""The contact pipe's text: munin-limits writes one message per service whose state changed,
all through one pipe while the contact's command stays the same, so messages are framed.

`munin-contact.txt` (beside this file) is the contact's `text` as munin.conf holds it; munin
expands it to:

    FETCHFLEET-ALERT 1
    group lab
    host web1
    plugin fetchfleet_supervisor_programs        (the service: a multigraph name, or df)
    title Supervisor programs running
    category supervisor
    worst CRITICAL
    field critical<TAB>cloudfetch_web<TAB>0.00<TAB>:<TAB>1:<TAB>cloudfetch-web
    field ok<TAB>cloudfetch_worker<TAB>1.00<TAB>:<TAB>1:<TAB>cloudfetch-worker
    FETCHFLEET-END

`field` lines: state, field name, value ("unknown" when munin has none), warning and critical
ranges ("MIN:MAX", either side may be empty), label (the rest of the line, tabs and all). Blank
lines come from empty loops. The `ok` lines are the fields that recovered in this run, or, when
none did, every field that is OK (munin-limits' fofields).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TextIO

BEGIN, VERSION, END = "FETCHFLEET-ALERT", "1", "FETCHFLEET-END"
KEYS = ("group", "host", "plugin", "title", "category", "worst")
STATES = ("critical", "warning", "unknown", "ok")


@dataclass(frozen=True)
class FieldState:
    state: str
    name: str
    value: float | None
    warning: str
    critical: str
    label: str


@dataclass
class Message:
    group: str = ""
    host: str = ""
    plugin: str = ""
    title: str = ""
    category: str = ""
    worst: str = ""  # the service's worst state now: OK, WARNING, CRITICAL or UNKNOWN
    fields: list[FieldState] = field(default_factory=list)


def parse(lines: Iterable[str], log: TextIO = sys.stderr) -> Iterator[Message]:
    """Every complete message in `lines`, as soon as its end line is read. What does not fit
    the format (text outside a frame, a frame cut short, a bad line) is logged and skipped."""
    current: Message | None = None
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        if line.startswith(BEGIN):
            if current is not None:
                log.write(
                    f"fetchfleet-pager: line {number}: a new message began before the last ended; dropped the unfinished one for {current.host or '?'}/{current.plugin or '?'}\n"
                )
            current = Message()
            version = line[len(BEGIN) :].strip()
            if version != VERSION:
                log.write(
                    f"fetchfleet-pager: line {number}: message format {version!r}, reading it as {VERSION}\n"
                )
            continue
        if current is None:
            log.write(
                f"fetchfleet-pager: line {number}: outside any message, ignored: {line[:200]!r}\n"
            )
            continue
        if line == END:
            missing = [k for k in ("host", "plugin") if not getattr(current, k)]
            if missing:
                log.write(
                    f"fetchfleet-pager: line {number}: message without {', '.join(missing)}, dropped\n"
                )
            else:
                yield current
            current = None
            continue
        key, _, rest = line.partition(" ")
        if key in KEYS:
            setattr(current, key, rest.strip())
        elif key == "field" and (parsed := _field(rest)) is not None:
            current.fields.append(parsed)
        else:
            log.write(f"fetchfleet-pager: line {number}: not understood, ignored: {line[:200]!r}\n")
    if current is not None:
        log.write(
            f"fetchfleet-pager: the pipe closed inside a message for {current.host or '?'}/{current.plugin or '?'}; dropped\n"
        )


def _field(rest: str) -> FieldState | None:
    parts = rest.split("\t", 5)
    if len(parts) != 6 or parts[0] not in STATES or not parts[1]:
        return None
    state, name, value, warning, critical, label = parts
    try:
        number = None if value == "unknown" else float(value)
    except ValueError:
        return None
    return FieldState(state, name, number, warning, critical, label)
