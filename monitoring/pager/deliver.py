"""Sending the spool with the maintained `pagerduty` client (EventsApiV2Client).

The client would block munin-limits' contact for long: it retries 429 without limit and 5xx
several times with growing sleeps (1.5 s doubling), and waits 60 s for an answer. Here it tries
an event at most twice (one retry half a second later), waits `timeout` seconds per attempt,
and otherwise leaves the event spooled: the next flush (the next munin run, every minute, after
the backoff) sends it, in order, since a flush stops at the first event that does not go out.
"""

from __future__ import annotations

import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import pagerduty

from pager.spool import Item, Spool

RETRIED_STATUSES = (429, 500, 502, 503, 504)


@dataclass(frozen=True)
class Target:
    events_url: str  # https:// base URL of the Events API
    routing_key: str
    ca_file: Path | None = None  # the CA to trust instead of the system's (a lab stand-in)
    timeout: float = 5.0


def client(target: Target) -> pagerduty.EventsApiV2Client:
    verify: ssl.SSLContext | bool = True
    if target.ca_file is not None:
        verify = ssl.create_default_context(cafile=str(target.ca_file))
    events = pagerduty.EventsApiV2Client(
        target.routing_key, base_url=target.events_url, verify=verify
    )
    events.retry = dict.fromkeys(RETRIED_STATUSES, 1)
    events.max_network_attempts = 1
    events.sleep_timer = 0.25  # the one retry comes 0.5 s later (sleep_timer x 2)
    events.timeout = target.timeout
    return events


@dataclass(frozen=True)
class Outcome:
    sent: int = 0
    rejected: int = 0
    left: int = 0
    busy: bool = False
    waiting_until: float | None = None
    error: str | None = None


def send(events: pagerduty.EventsApiV2Client, event: dict[str, Any]) -> None:
    body = {k: v for k, v in event.items() if k not in ("event_action", "dedup_key")}
    events.send_event(event["event_action"], dedup_key=event.get("dedup_key"), **body)


def flush(
    spool: Spool,
    make_client: Callable[[], pagerduty.EventsApiV2Client],
    log: TextIO = sys.stderr,
    force: bool = False,
    wait: float = 0.0,
) -> Outcome:
    """Send what is spooled, oldest first, until the queue is empty or a send fails. Another
    process sending already: wait up to `wait` seconds for it, then leave it to it."""
    with spool.sender(wait) as mine:
        if not mine:
            return Outcome(left=len(spool.pending()), busy=True)
        until = spool.backoff()["until"]
        if not force and until > time.time():
            return Outcome(left=len(spool.pending()), waiting_until=until)
        sent = rejected = 0
        try:
            events = make_client()
        except (pagerduty.Error, pagerduty.UrlError, OSError, ValueError) as err:
            return _failed(spool, log, f"cannot set up the client: {err}", sent, rejected)
        with events:
            # The queue is listed again after each batch: a pager started meanwhile may have
            # spooled more behind it.
            while batch := spool.pending():
                for item in batch:
                    problem = _attempt(events, item)
                    if problem is None:
                        spool.done(item)
                        spool.succeeded()
                        sent += 1
                        continue
                    if not problem.startswith("400"):
                        return _failed(spool, log, f"{_name(item)}: {problem}", sent, rejected)
                    where = spool.reject(item, problem)
                    log.write(
                        f"fetchfleet-pager: PagerDuty refused {_name(item)}: {problem}; kept in {where}\n"
                    )
                    rejected += 1
        return Outcome(sent=sent, rejected=rejected)


def _attempt(events: pagerduty.EventsApiV2Client, item: Item) -> str | None:
    try:
        send(events, item.event)
    except pagerduty.HttpError as err:
        status = err.response.status_code if err.response is not None else 0
        if 400 <= status < 500 and status not in (408, 429):
            return f"400 invalid event (HTTP {status}): {err.response.text[:500]}"
        return f"HTTP {status}, will retry"
    except pagerduty.Error as err:
        return f"{err}, will retry"
    return None


def _failed(spool: Spool, log: TextIO, why: str, sent: int, rejected: int) -> Outcome:
    until = spool.failed()
    left = len(spool.pending())
    log.write(
        f"fetchfleet-pager: not sent: {why}; {left} event(s) stay spooled in {spool.queue}, "
        f"next try after {time.strftime('%H:%M:%S', time.localtime(until))} "
        "(fetchfleet-pager flush --now to try at once)\n"
    )
    return Outcome(sent=sent, rejected=rejected, left=left, waiting_until=until, error=why)


def _name(item: Item) -> str:
    return f"{item.event.get('event_action')} {item.event.get('dedup_key')}"
