"""The pager's directory: events waiting to be sent (in order), the ones PagerDuty refused, the
alert state, and the backoff after a failed send.

    SPOOL/queue/<ns>-<pid>-<n>.json   waiting, oldest first (written to .tmp, fsynced, renamed)
    SPOOL/rejected/...                refused as invalid (400): kept for a person to look at
    SPOOL/state.json                  dedup key -> what was last decided (events.events_for)
    SPOOL/state.lock                  held (flock) while a process reads, changes and writes it
    SPOOL/backoff.json                consecutive failures, and when to try again
    SPOOL/lock                        held (flock) by the one process sending

An event is written to the queue before anything is sent, and leaves it only once PagerDuty
answered 202 (or 400: then it moves to rejected/). Routing keys are never written here.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BACKOFF_BASE_SECONDS = 30.0
BACKOFF_MAX_SECONDS = 600.0
_counter = itertools.count()


@dataclass(frozen=True)
class Item:
    path: Path
    event: dict[str, Any]
    spooled_at: float


class Spool:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.queue = directory / "queue"
        self.rejected = directory / "rejected"
        for path in (self.queue, self.rejected):
            path.mkdir(parents=True, exist_ok=True)

    # --- the queue ----------------------------------------------------------------------------

    def put(self, event: dict[str, Any]) -> Path:
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(_counter):06d}.json"
        _write_durably(self.queue / name, {"event": event, "spooled_at": time.time()})
        return self.queue / name

    def pending(self) -> list[Item]:
        items = []
        for path in sorted(self.queue.glob("*.json")):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # taken by another process meanwhile, or half a file: not ours to send
            items.append(Item(path, data["event"], data["spooled_at"]))
        return items

    def done(self, item: Item) -> None:
        item.path.unlink(missing_ok=True)

    def reject(self, item: Item, reason: str) -> Path:
        target = self.rejected / item.path.name
        _write_durably(
            target, {"event": item.event, "spooled_at": item.spooled_at, "reason": reason}
        )
        item.path.unlink(missing_ok=True)
        return target

    # --- alert state ----------------------------------------------------------------------------

    def load_state(self) -> dict[str, dict[str, Any]]:
        return _read_json(self.dir / "state.json", {})

    def save_state(self, state: dict[str, dict[str, Any]]) -> None:
        _write_durably(self.dir / "state.json", state)

    @contextlib.contextmanager
    def editing_state(self) -> Iterator[dict[str, dict[str, Any]]]:
        """The alert state, saved on leaving, while no other pager changes it: munin-limits'
        pager and the timer's flush both decide (triggers, held triggers released)."""
        with open(self.dir / "state.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = self.load_state()
                yield state
                self.save_state(state)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # --- backoff after failures ------------------------------------------------------------------

    def backoff(self) -> dict[str, float]:
        return _read_json(self.dir / "backoff.json", {"failures": 0, "until": 0.0})

    def failed(self, now: float | None = None) -> float:
        """Note one more failed send; returns the time before which not to try again."""
        now = time.time() if now is None else now
        failures = self.backoff()["failures"] + 1
        wait = min(BACKOFF_BASE_SECONDS * 2 ** (failures - 1), BACKOFF_MAX_SECONDS)
        _write_durably(self.dir / "backoff.json", {"failures": failures, "until": now + wait})
        return now + wait

    def succeeded(self) -> None:
        (self.dir / "backoff.json").unlink(missing_ok=True)

    # --- one sender at a time -----------------------------------------------------------------------

    @contextlib.contextmanager
    def sender(self, wait: float = 0.0) -> Iterator[bool]:
        """Yields True while this process holds the send lock, False when another one kept it
        for longer than `wait` seconds."""
        with open(self.dir / "lock", "a") as lock:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.1)
            try:
                yield True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except ValueError:
        return default


def _write_durably(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
