"""fetchfleet-pager's commands.

    fetchfleet-pager [--config FILE]            munin-limits' contact: read messages on stdin
    fetchfleet-pager flush [--now] [--wait S]   send what is spooled (the munin timer runs it)
    fetchfleet-pager status                     spooled, rejected, backoff, open alerts
    fetchfleet-pager test [--source HOST]       a test trigger, then its resolve, end to end

The configuration (JSON, written by roles/munin):

    {"events_url": "https://events.pagerduty.com",      # https only (the client refuses http)
     "routing_key_file": "/etc/fetchfleet/pagerduty-routing-key",
     "ca_file": null,                                    # a CA to trust instead of the system's
     "spool_dir": "/var/spool/fetchfleet-pager",
     "silence_file": null,                               # default: SPOOL/silences.json
     "munin_limits_file": "/var/lib/munin/limits",       # munin-limits' DBDIR/limits; null (the
                                                         # default): not reconciled
     "runbook_url": "https://ops1/runbooks", "munin_url": "https://ops1/munin",
     "timeout_seconds": 5}

Reading the pipe never depends on being able to send: every event is spooled first, and a
problem with sending (no network, a bad routing key file) is logged and retried later.
Triggers an active silence covers are held (pager/silence.py). Every run, munin-limits' and the
timer's flush alike, first resolves the open and held alerts munin-limits' state file says are OK
now (their OK never reached the pager: events.reconcile), then sends the held ones no silence
covers any more. A state file that cannot be read resolves nothing (and says so).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pager import deliver, events, limits, message
from pager import silence as S
from pager.spool import Spool

DEFAULT_CONFIG = Path("/etc/fetchfleet/pager.json")
DEFAULT_SPOOL = Path("/var/spool/fetchfleet-pager")
ROUTING_KEY_LENGTH = 32


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Config:
    events_url: str
    routing_key_file: Path
    ca_file: Path | None
    spool_dir: Path
    links: events.Links
    timeout: float
    silence_file: Path
    munin_limits_file: Path | None


def load_config(path: Path) -> Config:
    try:
        raw: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: {err}") from err
    return parse_config(raw, str(path))


def parse_config(raw: dict[str, Any], where: str) -> Config:
    """The configuration's JSON object (`where` names it in errors): fab reads the monitoring
    host's file with this too, to find the spool and the silences."""
    url = str(raw.get("events_url", "https://events.pagerduty.com"))
    if not url.startswith("https://"):
        raise ConfigError(f"{where}: events_url {url!r} must be an https:// URL")
    spool = Path(raw.get("spool_dir", DEFAULT_SPOOL))
    return Config(
        events_url=url,
        routing_key_file=Path(raw.get("routing_key_file", "/etc/fetchfleet/pagerduty-routing-key")),
        ca_file=Path(raw["ca_file"]) if raw.get("ca_file") else None,
        spool_dir=spool,
        links=events.Links(str(raw.get("runbook_url", "")), str(raw.get("munin_url", ""))),
        timeout=float(raw.get("timeout_seconds", 5)),
        silence_file=Path(raw.get("silence_file") or spool / "silences.json"),
        munin_limits_file=Path(raw["munin_limits_file"]) if raw.get("munin_limits_file") else None,
    )


def target(config: Config) -> deliver.Target:
    try:
        key = config.routing_key_file.read_text().strip()
    except OSError as err:
        raise ConfigError(f"routing key: {err}") from err
    if len(key) != ROUTING_KEY_LENGTH:
        raise ConfigError(
            f"routing key in {config.routing_key_file} has {len(key)} characters, not {ROUTING_KEY_LENGTH}"
        )
    return deliver.Target(config.events_url, key, config.ca_file, config.timeout)


def _make_client(config: Config):  # type: ignore[no-untyped-def]
    def make():  # type: ignore[no-untyped-def]
        try:
            return deliver.client(target(config))
        except ConfigError as err:
            raise ValueError(str(err)) from err

    return make


def settle(config: Config, spool: Spool, log: TextIO) -> list[S.Silence]:
    """Every run's first step: spool resolves for what munin-limits has found OK behind the
    pager's back, then the held triggers no silence covers any more; returns the silences read."""
    silences = S.load(config.silence_file, log)
    munin = None
    if config.munin_limits_file is not None:
        try:
            munin = limits.read(config.munin_limits_file)
        except limits.Unreadable as err:
            log.write(
                f"fetchfleet-pager: munin-limits' state unreadable, nothing reconciled: {err}\n"
            )
    with spool.editing_state() as state:
        now = _now()
        # Reconciled first: a hold munin-limits has found OK is dropped, never paged.
        decided = events.reconcile(state, munin, now, log) if munin is not None else []
        decided += events.release_held(state, silences, now, log)
        for event in decided:
            spool.put(event)
    return silences


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def read_pipe(config: Config, lines: TextIO, log: TextIO) -> int:
    """munin-limits' contact: spool each message's events as it is read, then try to send."""
    spool = Spool(config.spool_dir)
    silences = settle(config, spool, log)
    spooled = 0
    for msg in message.parse(lines, log):
        with spool.editing_state() as state:
            decided = events.events_for(msg, state, config.links, _now(), silences, log)
            for event in decided:
                spool.put(event)
        spooled += len(decided)
        if decided:
            deliver.flush(spool, _make_client(config), log)
    outcome = deliver.flush(spool, _make_client(config), log)
    log.write(f"fetchfleet-pager: {spooled} event(s) from munin-limits; {outcome.left} waiting\n")
    return 0


def status(config: Config, out: TextIO) -> int:
    spool = Spool(config.spool_dir)
    backoff = spool.backoff()
    state = spool.load_state()
    open_alerts = sorted(k for k, v in state.items() if v.get("action") == "trigger")
    held = sorted(k for k, v in state.items() if v.get("action") == "held")
    out.write(f"spooled: {len(spool.pending())} in {spool.queue}\n")
    out.write(f"rejected: {len(list(spool.rejected.glob('*.json')))} in {spool.rejected}\n")
    if backoff["failures"]:
        until = time.strftime("%H:%M:%S", time.localtime(backoff["until"]))
        out.write(f"backoff: {backoff['failures']} failed send(s), next try after {until}\n")
    out.write(f"open alerts: {len(open_alerts)}\n")
    for key in open_alerts:
        out.write(f"  {key}  {state[key]['severity']}  since {state[key]['at']}\n")
    out.write(f"held by a silence: {len(held)}\n")
    for key in held:
        by = state[key]["silence"]
        out.write(
            f"  {key}  {state[key]['severity']}  since {state[key]['at']}  by {S.describe(by)}\n"
        )
    silences = S.active(S.load(config.silence_file, out), _now())
    out.write(f"active silences: {len(silences)} in {config.silence_file}\n")
    for s in silences:
        out.write(
            f"  {s['id']}  until {s['until']}  hosts {' '.join(s['hosts'])}  "
            f"alerts {' '.join(s['alerts'])}  {S.describe(s)}\n"
        )
    return 0


def test_page(config: Config, source: str, out: TextIO) -> int:
    """A trigger and its resolve straight to PagerDuty (not through the spool): the answer is
    printed, so a person sees at once whether paging works."""
    key = f"fetchfleet-test/{source}/{int(time.time())}"
    client = deliver.client(target(config))
    with client:
        client.trigger(
            f"{source}: fetchfleet test page (fetchfleet-pager test)",
            source,
            dedup_key=key,
            severity="info",
            links=[
                {
                    "href": events.runbook_link(config.links, "test_page"),
                    "text": "Runbook: test_page",
                }
            ],
        )
        out.write(f"triggered {key}\n")
        client.resolve(key)
        out.write(f"resolved {key}\n")
    return 0


def main(
    argv: list[str] | None = None,
    stdin: TextIO = sys.stdin,
    out: TextIO = sys.stdout,
    log: TextIO = sys.stderr,
) -> int:
    parser = argparse.ArgumentParser(prog="fetchfleet-pager", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    commands = parser.add_subparsers(dest="command")
    flush = commands.add_parser("flush", help="send what is spooled")
    flush.add_argument("--now", action="store_true", help="ignore the backoff after failures")
    flush.add_argument(
        "--wait", type=float, default=0.0, help="seconds to wait for a pager that is sending"
    )
    commands.add_parser("status", help="spooled and rejected events, open alerts")
    test = commands.add_parser("test", help="send a test page and resolve it")
    test.add_argument("--source", default="fetchfleet-pager")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as err:
        if args.command is not None:
            log.write(f"fetchfleet-pager: {err}\n")
            return 2
        # The pipe must still be read and nothing lost: spool where the default says.
        log.write(f"fetchfleet-pager: {err}; spooling in {DEFAULT_SPOOL} and not sending\n")
        config = parse_config(
            {"events_url": "https://invalid.", "routing_key_file": "/nonexistent"}, ""
        )
    try:
        if args.command is None:
            return read_pipe(config, stdin, log)
        if args.command == "flush":
            settle(config, Spool(config.spool_dir), log)
            outcome = deliver.flush(
                Spool(config.spool_dir), _make_client(config), log, force=args.now, wait=args.wait
            )
            out.write(f"sent {outcome.sent}, rejected {outcome.rejected}, waiting {outcome.left}\n")
            return 0 if outcome.left == 0 or outcome.busy else 1
        if args.command == "status":
            return status(config, out)
        return test_page(config, args.source, out)
    except ConfigError as err:
        log.write(f"fetchfleet-pager: {err}\n")
        return 2
