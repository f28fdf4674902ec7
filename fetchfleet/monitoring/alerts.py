"""`fab monitor.status`: every alert's state now, as the Munin master has it — one row per host,
alert and field with munin-limits' state and value, since when (what the pager last did for that
dedup key, and when), whether it paged or is held by a silence, and its runbook.

munin-limits keeps no timestamps and no value for an OK field: `since` is the pager's (when it
triggered, held or resolved the alert) and an OK field's value is blank. The files are read on
the monitoring host by fetchfleet/programs/munin_alerts.py; parsing is here.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fetchfleet import remote
from fetchfleet.errors import FleetError
from fetchfleet.inventory import Fleet, Host
from fetchfleet.monitoring.pagercode import events as pager_events
from fetchfleet.monitoring.pagercode import silence as pager_silence
from fetchfleet.monitoring.silence import RUNBOOKS, MonitoringError, monitoring_hosts, pager_config
from fetchfleet.remote import Runner, each, run_program

MUNIN_CONF = "/etc/munin/munin.conf"  # Debian's; roles/munin writes it there
STATES = ("critical", "warning", "unknown", "ok")
# The timer runs munin-limits every minute; older than this, something stopped it.
STALE_SECONDS = 300.0
_VALUE = (
    re.compile(r"^Value is (?P<v>unknown|[-+0-9.eE]+)\.(?:\s|$)"),  # no extinfo
    re.compile(r"^(?P<v>[-+0-9.eE]+) \(not in "),  # with the plugin's extinfo
    re.compile(r"^(?P<v>unknown):"),
)


@dataclass(frozen=True)
class FieldState:
    group: str
    host: str
    alert: str  # munin-limits' service: a graph's name, the runbook's name
    field: str
    state: str
    text: str  # munin-limits' words for the state

    @property
    def dedup_key(self) -> str:
        return pager_events.dedup_key(self.host, self.alert, self.field)

    @property
    def value(self) -> str:
        for pattern in _VALUE:
            if found := pattern.match(self.text):
                return found["v"]
        return ""


def parse_limits(text: str) -> list[FieldState]:
    """DBDIR/limits as munin-limits 2.0.73 writes it (munin_writeconfig): `GROUP;HOST;SERVICE;
    FIELD;ATTRIBUTE VALUE`, `#` escaped as `\\#`, a `version` line first. roles/munin puts every
    host in one group (`[DOMAIN;HOST]`), so the host is the second part."""
    attrs: dict[tuple[str, ...], dict[str, str]] = {}
    for line in text.splitlines():
        path, _, value = line.partition(" ")
        parts = path.split(";")
        if len(parts) < 5:
            continue  # the version line, and anything that is not a field's attribute
        where = (parts[0], parts[1], ".".join(parts[2:-2]), parts[-2])
        attrs.setdefault(where, {})[parts[-1]] = value.replace("\\#", "#").removesuffix("\\")
    found = []
    for (group, host, alert, name), a in attrs.items():
        state = a.get("state", "")
        if state in STATES:
            found.append(FieldState(group, host, alert, name, state, a.get(state, "")))
    return sorted(found, key=lambda f: (STATES.index(f.state), f.host, f.alert, f.field))


@dataclass
class MasterStatus:
    host: str
    rows: list[dict[str, str]] = field(default_factory=list)
    limits_age: float | None = None
    pager_waiting: int | None = None
    pager_rejected: int | None = None
    problem: str = ""

    def counts(self) -> dict[str, int]:
        return {s: sum(r["state"] == s.upper() for r in self.rows) for s in STATES}


def rows(
    fields: Iterable[FieldState],
    pager_state: dict[str, dict[str, Any]],
    silences: list[dict[str, Any]],
    now: datetime.datetime,
    waiting: Iterable[str] = (),
) -> list[dict[str, str]]:
    """`waiting`: dedup keys whose events the pager has spooled but not sent yet."""
    unsent = set(waiting)
    out = []
    for f in fields:
        last = pager_state.get(f.dedup_key, {})
        action = last.get("action", "")
        current = f.state != "ok"
        agrees = action in (("trigger", "held", "suppressed") if current else ("resolve",))
        held = pager_silence.matching(silences, f.host, f.alert, now)
        book = RUNBOOKS / f"{f.alert}.md"
        out.append(
            {
                "host": f.host,
                "alert": f.alert,
                "field": f.field,
                "state": f.state.upper(),
                "value": f.value,
                "since": _since(last.get("at"), now) if agrees else "",
                "paged": _unsent(_paged(action, last, current, held), f.dedup_key in unsent),
                "runbook": str(book.relative_to(RUNBOOKS.parents[1])) if book.exists() else "NONE",
            }
        )
    return out


def _paged(action: str, last: dict, current: bool, held: dict | None) -> str:
    if action == "held":
        return f"held: silenced by {pager_silence.describe(last['silence'])}"
    if held is not None:
        return f"silenced until {held['until'][11:19]}Z ({pager_silence.describe(held)})"
    if not current:
        return ""
    if action == "trigger":
        return f"paged ({last.get('severity')})"
    if action == "suppressed":
        return "no: part of its plugin's outage (_up)"
    return "NOT PAGED (see the pager's log)"


def _unsent(paged: str, spooled: bool) -> str:
    if not spooled:
        return paged
    return f"{paged or 'resolved'}, NOT SENT YET (spooled on the master)"


def _since(at: str | None, now: datetime.datetime) -> str:
    if not at:
        return ""
    then = datetime.datetime.fromisoformat(at)
    return f"{then:%Y-%m-%d %H:%M}Z ({_age((now - then).total_seconds())} ago)"


def _age(seconds: float) -> str:
    seconds = max(seconds, 0)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def read_master(runner: Runner, host: Host) -> MasterStatus:
    config = pager_config(runner)
    seen = run_program(runner, "munin_alerts", MUNIN_CONF, str(config.spool_dir), timeout=60)
    if seen["munin_conf"] is None:
        raise MonitoringError(
            f"no Munin master here ({MUNIN_CONF} missing)",
            host.name,
            hint="converge playbooks/monitoring.yml",
        )
    if seen["limits"] is None:
        raise MonitoringError(
            f"munin-limits has not run yet: no {seen['dbdir']}/limits",
            host.name,
            hint=f"systemctl status fetchfleet-munin-update.timer on {host.name}",
        )
    listed = run_program(runner, "silences", str(config.silence_file), "list", timeout=30)
    now = datetime.datetime.fromtimestamp(seen["now"], datetime.UTC)
    status = MasterStatus(
        host.name,
        rows(
            parse_limits(seen["limits"]),
            seen["pager_state"],
            listed["silences"],
            now,
            seen["pager_waiting_keys"],
        ),
        seen["limits_age"],
        seen["pager_waiting"],
        seen["pager_rejected"],
    )
    if status.limits_age is not None and status.limits_age > STALE_SECONDS:
        status.problem = (
            f"munin-limits last ran {_age(status.limits_age)} ago: these states are old "
            f"(systemctl status fetchfleet-munin-update.timer on {host.name})"
        )
    return status


def status(fleet: Fleet, connect: Callable[[Host], Runner] = remote.connect) -> list[MasterStatus]:
    """One MasterStatus per monitoring host; a host that cannot be read says why."""
    hosts = monitoring_hosts(fleet)
    if not hosts:
        raise MonitoringError(f"inventory {fleet.name} has no monitoring host: nothing watches it")
    found = []
    for host, outcome in zip(hosts, each(lambda h: read_master(connect(h), h), hosts), strict=True):
        found.append(outcome.value or MasterStatus(host.name, problem=_why(outcome.error)))
    return found


def _why(err: FleetError | None) -> str:
    if err is None:
        return ""
    return err.what + (f" (-> {err.hint})" if err.hint else "")
