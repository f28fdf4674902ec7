"""From a munin-limits message to Events API v2 events.

One alert per host, service and field: dedup_key `munin/HOST/SERVICE/FIELD`. CRITICAL and
WARNING trigger with that severity; UNKNOWN (munin has had no value for unknown_limit runs)
triggers with severity `error`: the fleet cannot see that figure. OK resolves. The runbook of an
alert is `RUNBOOK_URL/SERVICE.md`, one per service (graph): its fields share one meaning.

What was last sent per dedup key is kept (`state`), so a message that repeats a field's state
(munin-limits sends the whole service when any field changes) sends nothing for it, and an OK
field resolves only an alert that may be open. While a plugin's availability alert (the graph
PLUGIN_up) is open on a host, the UNKNOWNs of that plugin's other graphs there are not paged:
they are the same outage.

A trigger that an active silence covers (pager/silence.py) is held, not sent: the state keeps the
event and the silence. `release_held` sends it once no silence covers it any more, marked in its
custom_details; an OK meanwhile resolves it (resolves are always sent) and drops the hold.

munin-limits sends a field's state only when it changes by its own state file, and moves on
whether or not its contact read the message. `reconcile` compares the open and held alerts with
that file (pager/limits.py) and resolves those munin-limits has found OK since: an OK that never
reached the pager would otherwise leave the alert open, and deduplicate the field's next page.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from pager import silence as S
from pager.limits import Limits
from pager.message import FieldState, Message

SEVERITY = {"critical": "critical", "warning": "warning", "unknown": "error"}
MAX_SUMMARY = 1024
CLIENT = "fetchfleet Munin"


@dataclass(frozen=True)
class Links:
    runbook_url: str  # base, e.g. https://ops1/runbooks
    munin_url: str  # base, e.g. https://ops1/munin


def dedup_key(host: str, service: str, field: str) -> str:
    return f"munin/{host}/{service}/{field}"


def runbook_link(links: Links, service: str) -> str:
    return f"{links.runbook_url.rstrip('/')}/{service}.md"


def events_for(
    message: Message,
    state: dict[str, dict[str, Any]],
    links: Links,
    now: datetime.datetime,
    silences: Sequence[S.Silence] = (),
    log: TextIO | None = None,
) -> list[dict[str, Any]]:
    """The events this message calls for, in the order of its fields; `state` (dedup key ->
    what was last done for it) is updated as they are decided. Triggers an active silence
    covers are held in `state` instead (and named in `log`)."""
    out = []
    for f in message.fields:
        key = dedup_key(message.host, message.plugin, f.name)
        last = state.get(key, {})
        if f.state == "ok":
            if last.get("action") in ("resolve", "suppressed"):
                continue
            if last.get("action") == "held" and log is not None:
                log.write(
                    f"fetchfleet-pager: {key} recovered while silenced by "
                    f"{S.describe(last['silence'])}: its trigger was never sent; resolving\n"
                )
            out.append({"event_action": "resolve", "dedup_key": key})
            state[key] = {"action": "resolve", "at": now.isoformat()}
            continue
        severity = SEVERITY[f.state]
        if last.get("action") in ("trigger", "held") and last.get("severity") == severity:
            continue
        if f.state == "unknown" and _outage_open(message, state):
            state[key] = {"action": "suppressed", "at": now.isoformat()}
            continue
        event = _trigger(message, f, key, severity, links, now)
        held_by = S.matching(silences, message.host, message.plugin, now)
        if held_by is not None:
            state[key] = {
                "action": "held",
                "severity": severity,
                "at": now.isoformat(),
                "event": event,
                "silence": S.summary(held_by),
            }
            if log is not None:
                log.write(
                    f"fetchfleet-pager: silenced by {S.describe(held_by)} until "
                    f"{held_by['until']}: {key} ({f.state.upper()}) not sent, held\n"
                )
            continue
        out.append(event)
        state[key] = {"action": "trigger", "severity": severity, "at": now.isoformat()}
    return out


def release_held(
    state: dict[str, dict[str, Any]],
    silences: Sequence[S.Silence],
    now: datetime.datetime,
    log: TextIO | None = None,
) -> list[dict[str, Any]]:
    """The held triggers no silence covers any more, each marked with the silence that held it;
    `state` records them as sent. A hold another silence now covers moves to that one."""
    out = []
    for key, last in sorted(state.items()):
        if last.get("action") != "held":
            continue
        event = last["event"]
        details = event["payload"].get("custom_details", {})
        still = S.matching(silences, details.get("host", ""), details.get("service", ""), now)
        if still is not None:
            last["silence"] = S.summary(still)
            continue
        held_by = last["silence"]
        note = (
            f"silenced by {S.describe(held_by)} from {last['at']} until {held_by['until']}; "
            f"still {details.get('state', 'open')} when the silence ended"
        )
        event["payload"]["custom_details"] = {**details, "silenced": note}
        out.append(event)
        state[key] = {"action": "trigger", "severity": last["severity"], "at": now.isoformat()}
        if log is not None:
            log.write(f"fetchfleet-pager: {key}: the silence is over, paging now ({note})\n")
    return out


def reconcile(
    state: dict[str, dict[str, Any]],
    munin: Limits,
    now: datetime.datetime,
    log: TextIO | None = None,
) -> list[dict[str, Any]]:
    """Resolves for the open and held alerts munin-limits has found OK since the pager last
    decided them: their OK never reached the pager (munin-limits sends a state only when it
    changes, so it will not send it again). A field munin-limits did not check, or did not find
    OK, is left as it is; nothing is ever triggered here."""
    out = []
    for key, last in sorted(state.items()):
        if last.get("action") not in ("trigger", "held"):
            continue
        prefix, _, rest = key.partition("/")
        where = rest.split("/")
        if prefix != "munin" or len(where) != 3 or not munin.says_ok(*where):
            continue
        try:
            # Decided after munin-limits wrote its view: that view may not know of it yet.
            if datetime.datetime.fromisoformat(last["at"]) >= munin.written:
                continue
        except (KeyError, TypeError, ValueError):
            continue
        how = "open"
        if last["action"] == "held":
            how = f"held (silenced by {S.describe(last.get('silence', {}))})"
        out.append({"event_action": "resolve", "dedup_key": key})
        state[key] = {"action": "resolve", "at": now.isoformat()}
        if log is not None:
            log.write(
                f"fetchfleet-pager: {key}: munin-limits says OK, the pager had it {how} since "
                f"{last['at']}; resolving\n"
            )
    return out


def _outage_open(message: Message, state: dict[str, dict[str, Any]]) -> bool:
    prefix = f"munin/{message.host}/"
    for key, last in state.items():
        if last.get("action") not in ("trigger", "held") or not key.startswith(prefix):
            continue
        service, _, field = key[len(prefix) :].partition("/")
        plugin = service.removesuffix("_up")
        if field == "up" and service != plugin and message.plugin.startswith(plugin + "_"):
            return service != message.plugin
    return False


def _trigger(
    message: Message,
    f: FieldState,
    key: str,
    severity: str,
    links: Links,
    now: datetime.datetime,
) -> dict[str, Any]:
    value = "unknown" if f.value is None else _number(f.value)
    summary = f"{message.host}: {message.title or message.plugin}: {f.label or f.name} is {value}"
    if f.state != "unknown":
        summary += f" ({f.state}: {_describe(getattr(f, f.state))})"
    else:
        summary += " (no value from munin: the figure cannot be measured)"
    return {
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {
            "summary": summary[:MAX_SUMMARY],
            "source": message.host,
            "severity": severity,
            "timestamp": now.isoformat(),
            "component": message.plugin,
            "group": message.group,
            "class": message.category or "munin",
            "custom_details": {
                "host": message.host,
                "munin_group": message.group,
                "service": message.plugin,
                "graph": message.title,
                "field": f.name,
                "label": f.label,
                "state": f.state.upper(),
                "value": f.value,
                "warning": f.warning,
                "critical": f.critical,
            },
        },
        "links": [
            {"href": runbook_link(links, message.plugin), "text": f"Runbook: {message.plugin}"},
            {
                "href": f"{links.munin_url.rstrip('/')}/{message.group}/{message.host}/index.html",
                "text": f"Munin: {message.host}",
            },
        ],
        "client": CLIENT,
        "client_url": links.munin_url,
    }


def _describe(limits: str) -> str:
    """Munin's "MIN:MAX" in words: "above 300", "below 1", "outside 10 to 20"."""
    low, sep, high = limits.partition(":")
    if not sep:
        low, high = "", low
    if low and high:
        return f"outside {low} to {high}"
    if high:
        return f"above {high}"
    if low:
        return f"below {low}"
    return "any value"


def _number(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e15 else f"{value:.0f}"
