"""Pages from the control machine: `fab monitor.page` (Jenkins pages on a failed job and resolves
on its next success), `fab monitor.flush`, and `fab monitor.test-page`.

The same code as munin-limits' contact (monitoring/pager): the event is spooled first
(`FETCHFLEET_PAGER_SPOOL`, default /var/lib/fetchfleet/pager, one spool per environment), then
the spool is sent in order with the client's retries capped; a 429, a 5xx, no network or a
problem with the settings leaves it spooled, and the next page or flush from this machine sends
it. Only an event that could neither be sent nor spooled, or that PagerDuty refused (400), is a
failure. Where to send comes from the inventory as the monitoring hosts' pager has it
(`munin_pager_events_url`, `munin_pager_ca_file`, `munin_pager_timeout_seconds`), the routing
key from the environment's vault (`vault_pagerduty_routing_key`, resolved by Ansible) or
`FETCHFLEET_PAGERDUTY_ROUTING_KEY`.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import shlex
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import pagerduty

from fetchfleet import remote
from fetchfleet.deploy.lock import who
from fetchfleet.errors import FleetError
from fetchfleet.inventory import Fleet, Host, load_fleet
from fetchfleet.monitoring.pagercode import deliver, events
from fetchfleet.monitoring.pagercode import spool as pager_spool
from fetchfleet.monitoring.silence import monitoring_hosts
from fetchfleet.remote import Runner, each
from fetchfleet.settings import setting

ROUTING_KEY_ENV = "FETCHFLEET_PAGERDUTY_ROUTING_KEY"
SPOOL_ENV = "FETCHFLEET_PAGER_SPOOL"
ROUTING_KEY_VAR = "vault_pagerduty_routing_key"
ROUTING_KEY_LENGTH = 32
ACTIONS = ("trigger", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255
# roles/munin installs it (templates/usr/local/bin/fetchfleet-pager.j2).
PAGER_COMMAND = "/usr/local/bin/fetchfleet-pager"
SENDER_WAIT = 30.0  # for another page from this machine that is sending the spool


class PageError(FleetError):
    prefix = "monitor.page"


def spool_root() -> Path:
    return Path(os.environ.get(SPOOL_ENV, "/var/lib/fetchfleet/pager"))


@dataclass(frozen=True)
class Endpoint:
    events_url: str
    ca_file: Path | None
    timeout: float
    runbook_url: str


def endpoint(fleet: Fleet) -> Endpoint:
    """Where the environment's pages go: the monitoring hosts' pager settings (any host's when
    the inventory has no monitoring host: the role's defaults and group_vars/all)."""
    host = (monitoring_hosts(fleet) or list(fleet.hosts))[0]
    ca = str(setting(host, "munin_pager_ca_file") or "")
    return Endpoint(
        str(setting(host, "munin_pager_events_url")),
        Path(ca) if ca else None,
        float(setting(host, "munin_pager_timeout_seconds")),
        str(setting(host, "munin_pager_runbook_url")),
    )


def routing_key(fleet: Fleet) -> str:
    key = os.environ.get(ROUTING_KEY_ENV)
    if not key:
        from fetchfleet.jenkins.controller import resolve_var  # runs ansible: only when needed

        host = (monitoring_hosts(fleet) or list(fleet.hosts))[0]
        key = resolve_var(str(fleet.path), host.name, ROUTING_KEY_VAR)
    if not key:
        raise PageError(
            f"no routing key: set {ROUTING_KEY_VAR} in inventory {fleet.name}'s vault "
            f"(export ANSIBLE_VAULT_PASSWORD_FILE) or {ROUTING_KEY_ENV}"
        )
    if len(key) != ROUTING_KEY_LENGTH:
        raise PageError(f"the routing key has {len(key)} characters, not {ROUTING_KEY_LENGTH}")
    return key


def target(fleet: Fleet) -> Any:
    where = endpoint(fleet)
    if not where.events_url.startswith("https://"):
        raise PageError(f"munin_pager_events_url {where.events_url!r} must be an https:// URL")
    return deliver.Target(where.events_url, routing_key(fleet), where.ca_file, where.timeout)


def build_event(
    action: str,
    severity: str | None = None,
    source: str | None = None,
    dedup_key: str | None = None,
    summary: str | None = None,
    link: str | None = None,
    env: str = "",
) -> dict[str, Any]:
    """One Events API v2 event from `fab monitor.page`'s options; bad values are refused here,
    each named, before anything is spooled or sent."""
    if action not in ACTIONS:
        raise PageError(f"--action {action!r}: one of {', '.join(ACTIONS)}")
    if dedup_key is not None and not 0 < len(dedup_key) <= MAX_DEDUP_KEY:
        raise PageError(
            f"--dedup-key must be 1 to {MAX_DEDUP_KEY} characters, got {len(dedup_key)}"
        )
    if action == "resolve":
        if not dedup_key:
            raise PageError("--action resolve needs --dedup-key (the key the trigger had)")
        return {"event_action": "resolve", "dedup_key": dedup_key}
    if severity not in SEVERITIES:
        raise PageError(f"--severity {severity!r}: one of {', '.join(SEVERITIES)}")
    summary = " ".join((summary or "").split())
    if not summary:
        raise PageError("--action trigger needs --summary (what the person paged reads first)")
    if len(summary) > MAX_SUMMARY:
        raise PageError(f"--summary is {len(summary)} characters, at most {MAX_SUMMARY}")
    if link is not None and not link.startswith(("https://", "http://")):
        raise PageError(f"--link {link!r} must be an http(s):// URL")
    source = source or socket.gethostname()
    stamp = datetime.datetime.now(datetime.UTC)
    event: dict[str, Any] = {
        "event_action": "trigger",
        "dedup_key": dedup_key or f"fab/{source}/{stamp:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}",
        "payload": {
            "summary": summary,
            "source": source,
            "severity": severity,
            "timestamp": stamp.isoformat(),
            "component": "fab monitor.page",
            "custom_details": {"env": env, "sent_by": who(), "control_host": socket.gethostname()},
        },
        "client": "fetchfleet",
    }
    if link:
        event["links"] = [{"href": link, "text": "Details"}]
    return event


@dataclass(frozen=True)
class Paged:
    status: str  # sent | spooled | rejected
    dedup_key: str
    spool: Path | None
    detail: str = ""
    others_sent: int = 0  # events spooled before this one that went out with it


def _client_maker(fleet: Fleet) -> Callable[[], Any]:
    def make() -> Any:
        try:
            return deliver.client(target(fleet))
        except FleetError as err:
            raise ValueError(err.what) from err

    return make


def page(env: str, event: dict[str, Any], log: TextIO = sys.stderr) -> Paged:
    """Spool the event, then send the spool; says what became of this event."""
    return _page(load_fleet(env), event, log)


def _page(fleet: Fleet, event: dict[str, Any], log: TextIO) -> Paged:
    make_client = _client_maker(fleet)
    directory = spool_root() / fleet.name
    try:
        spool = pager_spool.Spool(directory)
        path = spool.put(event)
    except OSError as err:
        return _send_unspooled(event, make_client, f"cannot spool in {directory}: {err}")
    outcome = deliver.flush(spool, make_client, log, force=True, wait=SENDER_WAIT)
    key = str(event.get("dedup_key"))
    if path.exists():
        why = outcome.error or "another page from this machine is still sending"
        return Paged("spooled", key, directory, why, outcome.sent)
    if (kept := spool.rejected / path.name).exists():
        reason = json.loads(kept.read_text()).get("reason", "")
        return Paged("rejected", key, spool.rejected, reason, outcome.sent)
    return Paged("sent", key, directory, "", outcome.sent - 1)


def _send_unspooled(event: dict[str, Any], make_client: Callable[[], Any], why: str) -> Paged:
    try:
        with make_client() as client:
            deliver.send(client, event)
    except (pagerduty.Error, pagerduty.UrlError, OSError, ValueError) as err:
        raise PageError(f"neither sent ({err}) nor spooled ({why})") from err
    return Paged("sent", str(event.get("dedup_key")), None, f"not spooled: {why}")


def flush(env: str, log: TextIO = sys.stderr) -> Any:
    """Send what this machine has spooled for the environment."""
    fleet = load_fleet(env)
    spool = pager_spool.Spool(spool_root() / fleet.name)
    return deliver.flush(spool, _client_maker(fleet), log, force=True, wait=SENDER_WAIT)


def spooled(fleet: Fleet) -> dict[str, int]:
    """What waits in this machine's spool for the environment (nothing when there is none)."""
    directory = spool_root() / fleet.name
    if not directory.is_dir():
        return {"waiting": 0, "rejected": 0}
    spool = pager_spool.Spool(directory)
    return {"waiting": len(spool.pending()), "rejected": len(list(spool.rejected.glob("*.json")))}


def test_page(
    env: str, connect: Callable[[Host], Runner] = remote.connect, log: TextIO = sys.stderr
) -> list[dict[str, str]]:
    """A trigger and its resolve by both ways pages leave: from this machine (as Jenkins pages)
    and from each monitoring host's pager (as munin-limits pages). One row per way."""
    fleet = load_fleet(env)
    rows = [_from_here(fleet, log)]
    hosts = monitoring_hosts(fleet)
    for host, outcome in zip(hosts, each(lambda h: _from_pager(connect(h), h), hosts), strict=True):
        rows.append(
            outcome.value or _row(f"{host.name}'s pager", "FAILED", "", "", str(outcome.error))
        )
    return rows


def _row(way: str, trigger: str, resolve: str, key: str, detail: str = "") -> dict[str, str]:
    return {"way": way, "trigger": trigger, "resolve": resolve, "dedup_key": key, "detail": detail}


def _from_here(fleet: Fleet, log: TextIO) -> dict[str, str]:
    way = f"this machine ({socket.gethostname()})"
    source = socket.gethostname()
    key = f"fetchfleet-test/{source}/{int(time.time())}"
    try:
        where = endpoint(fleet)
        client = _client_maker(fleet)()
    except (ValueError, FleetError, OSError) as err:
        return _row(way, "FAILED", "", key, str(err))
    link = events.runbook_link(events.Links(where.runbook_url, ""), "test_page")
    with client:
        t0 = time.monotonic()
        try:
            client.trigger(
                f"{source}: fetchfleet test page (fab monitor.test-page, {fleet.name})",
                source,
                dedup_key=key,
                severity="info",
                links=[{"href": link, "text": "Runbook: test_page"}],
            )
        except (pagerduty.Error, OSError) as err:
            return _row(way, "FAILED", "", key, str(err))
        sent = f"accepted in {time.monotonic() - t0:.1f}s"
        t0 = time.monotonic()
        try:
            client.resolve(key)
        except (pagerduty.Error, OSError) as err:
            # The test incident is open now: its resolve must not be lost.
            paged = _page(fleet, {"event_action": "resolve", "dedup_key": key}, log)
            return _row(way, sent, f"FAILED, {paged.status}", key, str(err))
    return _row(way, sent, f"accepted in {time.monotonic() - t0:.1f}s", key)


def _from_pager(runner: Runner, host: Host) -> dict[str, str]:
    way = f"{host.name}'s pager"
    command = f"{PAGER_COMMAND} test --source {shlex.quote(host.name)}"
    t0 = time.monotonic()
    proc = runner.run(command, check=False, timeout=60)
    seconds = f"{time.monotonic() - t0:.1f}s"
    said = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    key = said.get("triggered", "")
    if proc.returncode != 0 or "resolved" not in said:
        detail = f"`{command}` exited {proc.returncode}: {proc.tail(300)}"
        return _row(way, "accepted" if key else "FAILED", "FAILED", key, detail)
    return _row(way, f"accepted ({seconds} for both)", "accepted", key)
