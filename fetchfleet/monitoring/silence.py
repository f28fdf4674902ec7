"""Silences: planned work holds the alerts it expects to cause, and says so.

A silence is data on every monitoring host (the pager's `silence_file`, written by the remote
program `fetchfleet/programs/silences.py`; the format and how the pager honours it are in
monitoring/pager/silence.py): host and alert patterns, until when, why and who. While it lasts
the pager holds matching triggers instead of sending them; resolves always go out. Lifting a
silence does not end it at once but `LIFT_GRACE_SECONDS` later: Munin judges a sample taken
during the work a minute or two after it, and that sample must not page. Whatever still fails
then pages, marked "silenced by <reason>".

    with silenced(fleet, fleet.group("web"), ["fetchfleet_supervisor_*"], 30, "fab restart"):
        ...   # the work

Without a monitoring host in the inventory, silencing is a no-op that says so once. A
monitoring host that cannot be reached never stops the work: it is named, and its alerts may
page.
"""

from __future__ import annotations

import contextlib
import datetime
import fnmatch
import json
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from fetchfleet import remote
from fetchfleet.errors import FleetError
from fetchfleet.inventory import REPO, Fleet, Host, InventoryError
from fetchfleet.monitoring.pagercode import cli as pager_cli
from fetchfleet.remote import Runner, each, run_program
from fetchfleet.settings import setting

RUNBOOKS = REPO / "monitoring" / "runbooks"
NOT_ALERTS = {"README", "test_page"}
MAX_MINUTES = 7 * 24 * 60
# Two Munin runs (one a minute) and the timer's flush after the work ends.
LIFT_GRACE_SECONDS = 150.0
PATTERN = re.compile(r"^[A-Za-z0-9_.*?\[\]-]+$")

# What a rolling deploy, rollback or restart is expected to cause: its programs restart
# (supervisor sees them stopped or starting), the app's own figures start again, and while a
# worker restarts its queues have no consumer. Not the load balancers' 5xx or latency: draining
# exists so users see nothing, so a 5xx during a deploy is news.
ROLLOUT_ALERTS = ("fetchfleet_supervisor_*", "fetchfleet_app_*", "fetchfleet_celery_consumers")
# A rollout that is still running after this long is news too: its alerts then page.
ROLLOUT_MINUTES = 60

Say = Callable[[str], None]


class MonitoringError(FleetError):
    prefix = "monitoring"


@dataclass(frozen=True)
class Silence:
    id: str
    env: str
    hosts: tuple[str, ...]
    alerts: tuple[str, ...]
    reason: str
    who: str
    until: str  # as the first monitoring host's clock has it
    on: tuple[Host, ...]  # the monitoring hosts that hold it
    files: dict[str, str] = field(default_factory=dict)  # monitoring host -> its silence file
    missing: tuple[str, ...] = ()  # monitoring hosts it could not be written to, and why

    def describe(self) -> str:
        return (
            f"{', '.join(self.alerts)} on {', '.join(self.hosts)} until {self.until} "
            f"(silence {self.id}: {self.reason})"
        )


def known_alerts() -> list[str]:
    """Every alert, as its runbook names it (tests/unit/test_runbooks.py keeps them equal)."""
    return sorted(p.stem for p in RUNBOOKS.glob("*.md") if p.stem not in NOT_ALERTS)


def monitoring_hosts(fleet: Fleet) -> list[Host]:
    if not fleet.hosts:
        return []
    return fleet.group(str(setting(fleet.hosts[0], "munin_master_group", role="munin")))


def pager_config(runner: Runner) -> Any:
    """The pager's configuration on a monitoring host (where its spool and silences are)."""
    path = str(pager_cli.DEFAULT_CONFIG)
    proc = runner.run(f"cat {path}", check=False, timeout=30)
    if proc.returncode != 0:
        raise MonitoringError(
            f"no pager configuration {path}: {proc.tail(200)}",
            runner.name,
            "pager",
            hint="converge playbooks/monitoring.yml (roles/munin's master installs the pager)",
        )
    try:
        return pager_cli.parse_config(json.loads(proc.stdout), f"{runner.name}:{path}")
    except (ValueError, pager_cli.ConfigError) as err:
        raise MonitoringError(f"pager configuration {path}: {err}", runner.name, "pager") from err


def _names(fleet: Fleet, hosts: Iterable[Host | str]) -> tuple[str, ...]:
    names = []
    for h in hosts:
        name = h.name if isinstance(h, Host) else str(h)
        if not PATTERN.match(name):
            raise MonitoringError(f"host {name!r} is neither a host name nor a shell pattern")
        if not any(c in name for c in "*?["):
            try:
                fleet.host(name)
            except InventoryError as err:
                raise MonitoringError(str(err)) from err
        elif not any(fnmatch.fnmatchcase(h.name, name) for h in fleet.hosts):
            raise MonitoringError(f"host pattern {name!r} matches no host of {fleet.name}")
        names.append(name)
    if not names:
        raise MonitoringError("a silence needs at least one host")
    return tuple(dict.fromkeys(names))


def _alerts(alerts: Iterable[str]) -> tuple[str, ...]:
    known = known_alerts()
    patterns = tuple(dict.fromkeys(alerts))
    if not patterns:
        raise MonitoringError("a silence needs at least one alert (or pattern)")
    for pattern in patterns:
        if not PATTERN.match(pattern) or not any(fnmatch.fnmatchcase(a, pattern) for a in known):
            raise MonitoringError(
                f"alert {pattern!r} matches no alert (alerts: {', '.join(known)})"
            )
    return patterns


def silence(
    fleet: Fleet,
    hosts: Iterable[Host | str],
    plugins: Iterable[str],
    minutes: float,
    reason: str,
    connect: Callable[[Host], Runner] = remote.connect,
    who: str = "",
) -> Silence:
    """Hold the triggers of `plugins` (alerts, or shell patterns of them) on `hosts` for
    `minutes`, on every monitoring host. Bad arguments are refused before any host is asked;
    raises MonitoringError when no monitoring host could record it."""
    names, alerts = _names(fleet, hosts), _alerts(plugins)
    if not 0 < minutes <= MAX_MINUTES:
        raise MonitoringError(f"minutes must be above 0 and at most {MAX_MINUTES}, got {minutes}")
    reason = " ".join(reason.split())
    if not reason:
        raise MonitoringError("a silence needs a reason (it is what the page will say)")
    targets = monitoring_hosts(fleet)
    if not targets:
        raise MonitoringError(f"inventory {fleet.name} has no monitoring host")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    spec = {
        "id": f"s-{stamp}-{secrets.token_hex(2)}",
        "hosts": list(names),
        "alerts": list(alerts),
        "minutes": minutes,
        "reason": reason[:200],
        "who": who,
    }

    def write(host: Host) -> tuple[str, dict]:
        runner = connect(host)
        path = str(pager_config(runner).silence_file)
        answer = run_program(runner, "silences", path, "add", json.dumps(spec), timeout=30)
        if "error" in answer:
            raise MonitoringError(answer["error"], host.name, "silence")
        return path, answer["silence"]

    outcomes = each(write, targets)
    done = [(h, o.value) for h, o in zip(targets, outcomes, strict=True) if o.value]
    missing = tuple(_problem(h, o.error) for h, o in zip(targets, outcomes, strict=True) if o.error)
    if not done:
        raise MonitoringError(f"could not silence on any monitoring host: {'; '.join(missing)}")
    return Silence(
        spec["id"],
        fleet.name,
        names,
        alerts,
        spec["reason"],
        who,
        done[0][1][1]["until"],
        tuple(h for h, _ in done),
        {h.name: path for h, (path, _) in done},
        missing,
    )


def lift(
    silence: Silence,
    connect: Callable[[Host], Runner] = remote.connect,
    grace: float = LIFT_GRACE_SECONDS,
) -> list[str]:
    """End the silence `grace` seconds from now on every monitoring host that holds it; returns
    the problems (a host that did not answer keeps it until it ends by itself)."""

    def one(host: Host) -> None:
        path = silence.files[host.name]
        answer = run_program(connect(host), "silences", path, "lift", silence.id, str(grace))
        if "error" in answer:
            raise MonitoringError(answer["error"], host.name, "lift silence")

    outcomes = each(one, silence.on)
    return [_problem(h, o.error) for h, o in zip(silence.on, outcomes, strict=True) if o.error]


def lift_by_id(
    fleet: Fleet,
    ident: str,
    connect: Callable[[Host], Runner] = remote.connect,
    grace: float = LIFT_GRACE_SECONDS,
) -> tuple[Silence, list[str]]:
    """`fab monitor.unsilence ID`: lift a silence on the monitoring hosts that hold it."""
    holders: dict[Host, tuple[str, dict]] = {}
    targets = monitoring_hosts(fleet)

    def find(host: Host) -> tuple[str, dict] | None:
        runner = connect(host)
        path = str(pager_config(runner).silence_file)
        listed = run_program(runner, "silences", path, "list", timeout=30)
        now = datetime.datetime.fromisoformat(listed["now"])
        for s in listed["silences"]:
            if s["id"] == ident and datetime.datetime.fromisoformat(s["until"]) > now:
                return path, s
        return None

    for host, outcome in zip(targets, each(find, targets), strict=True):
        if outcome.value:
            holders[host] = outcome.value
    if not holders:
        raise MonitoringError(f"no active silence {ident!r} (fab monitor.status lists them)")
    record = next(iter(holders.values()))[1]
    held = Silence(
        ident,
        fleet.name,
        tuple(record["hosts"]),
        tuple(record["alerts"]),
        record["reason"],
        record.get("who", ""),
        record["until"],
        tuple(holders),
        {h.name: path for h, (path, _) in holders.items()},
    )
    return held, lift(held, connect, grace)


def _problem(host: Host, err: FleetError) -> str:
    return f"{host.name}: {err.what}" + (f" (-> {err.hint})" if err.hint else "")


def active(fleet: Fleet, connect: Callable[[Host], Runner] = remote.connect) -> list[dict]:
    """The silences the monitoring hosts hold now, one row each (the same id once)."""
    rows: dict[str, dict] = {}
    targets = monitoring_hosts(fleet)

    def one(host: Host) -> dict:
        runner = connect(host)
        return run_program(runner, "silences", str(pager_config(runner).silence_file), "list")

    for host, outcome in zip(targets, each(one, targets), strict=True):
        if outcome.error is not None:
            rows[f"?{host.name}"] = {"id": "?", "on": host.name, "reason": outcome.error.what}
            continue
        now = datetime.datetime.fromisoformat(outcome.value["now"])
        for s in outcome.value["silences"]:
            if datetime.datetime.fromisoformat(s["until"]) <= now:
                continue
            row = rows.setdefault(s["id"], _row(s))
            row["on"] = " ".join(filter(None, [row.get("on"), host.name]))
    return list(rows.values())


def _row(s: dict) -> dict:
    return {
        "id": s["id"],
        "hosts": " ".join(s["hosts"]),
        "alerts": " ".join(s["alerts"]),
        "until": s["until"],
        "reason": s["reason"],
        "who": s.get("who", ""),
        "lifted": "yes" if s.get("lifted") else "",
        "on": "",
    }


@contextlib.contextmanager
def silenced(
    fleet: Fleet,
    hosts: Iterable[Host | str],
    plugins: Sequence[str],
    minutes: float,
    reason: str,
    connect: Callable[[Host], Runner] = remote.connect,
    say: Say = print,
    who: str = "",
) -> Iterator[Silence | None]:
    """The silence for the duration of the block, lifted (with its grace) however it ends."""
    hosts = list(hosts)
    if not hosts:
        yield None
        return
    if not monitoring_hosts(fleet):
        say(f"no monitoring host in inventory {fleet.name}: no alerts to silence")
        yield None
        return
    try:
        held = silence(fleet, hosts, plugins, minutes, reason, connect, who)
    except FleetError as err:
        say(f"alerts NOT silenced, they may page: {err}")
        yield None
        return
    say(f"silenced {held.describe()}: their triggers are held, resolves still go out")
    for problem in held.missing:
        say(f"not silenced on {problem}: that monitoring host may page")
    try:
        yield held
    finally:
        problems = lift(held, connect)
        for problem in problems:
            say(f"could not lift silence {held.id} on {problem}; it ends by itself at {held.until}")
        if len(problems) < len(held.on):
            say(
                f"silence {held.id} lifted: what still fails in {LIFT_GRACE_SECONDS:.0f}s pages, "
                f'marked "silenced by {held.reason}"'
            )


def rollout_silence(
    fleet: Fleet, plan: Any, reason: str, connect: Callable[[Host], Runner], say: Say, who: str
) -> contextlib.AbstractContextManager[Silence | None]:
    """The silence of a rolling deploy, rollback or restart (`plan`: fetchfleet.deploy's Plan):
    its app hosts' programs and the app's figures, and, when workers restart, the queues'
    consumers on the broker."""
    hosts = list(plan.app_hosts) + (fleet.group("rabbitmq") if plan.workers else [])
    return silenced(fleet, hosts, ROLLOUT_ALERTS, ROLLOUT_MINUTES, reason, connect, say, who)
