"""Figures for Munin. Request counts are kept per process and added to the `counters` table at
most every `metrics_flush_seconds`, so every gunicorn worker's counts end up in one place for
the price of one UPDATE per worker per interval (not one per request)."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from datetime import UTC, datetime, timedelta
from typing import Any

from kombu import Connection
from sqlalchemy import Engine, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from cloudfetch.celery_app import QUEUES
from cloudfetch.models import Counter, StoredFile, Transfer, TransferState, User

log = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 1.5
COUNTER_NAMES = ("requests_total", "responses_4xx_total", "responses_5xx_total")


class RequestCounter:
    def __init__(self, engine: Engine, flush_seconds: float) -> None:
        self._engine = engine
        self._flush_seconds = flush_seconds
        self._pending: Tally[str] = Tally()
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()

    def count(self, status: int) -> None:
        with self._lock:
            self._pending["requests_total"] += 1
            if 400 <= status < 500:
                self._pending["responses_4xx_total"] += 1
            elif status >= 500:
                self._pending["responses_5xx_total"] += 1
            due = time.monotonic() - self._last_flush >= self._flush_seconds
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, Tally()
            self._last_flush = time.monotonic()
        if not pending:
            return
        try:
            with self._engine.begin() as connection:
                for name, value in sorted(pending.items()):
                    statement = insert(Counter).values(name=name, value=value)
                    connection.execute(
                        statement.on_conflict_do_update(
                            index_elements=[Counter.name],
                            set_={"value": Counter.value + statement.excluded.value},
                        )
                    )
        except Exception:
            # The database being down must not fail the request being counted; keep the counts
            # for the next flush.
            log.warning("could not flush request counters; keeping them", exc_info=True)
            with self._lock:
                self._pending.update(pending)


def queue_depth(broker_url: str) -> int | None:
    """Messages waiting in the app's queues, or None when the broker cannot be asked."""
    try:
        with Connection(broker_url, connect_timeout=BROKER_TIMEOUT_SECONDS) as connection:
            connection.connect()
            total = 0
            for queue in QUEUES:
                channel = connection.channel()
                try:
                    total += channel.queue_declare(queue=queue, passive=True).message_count
                except Exception:
                    # A queue nobody has declared yet holds no messages.
                    log.debug("queue %s not declared yet", queue)
                finally:
                    channel.close()
            return total
    except Exception as exc:
        log.warning("broker unreachable for queue depth: %s", exc)
        return None


def collect(session: Session, broker_url: str, interval_minutes: int) -> dict[str, Any]:
    since = datetime.now(UTC) - timedelta(minutes=interval_minutes)
    by_state = dict.fromkeys((s.value for s in TransferState), 0)
    for state, count in session.execute(
        select(Transfer.state, func.count()).group_by(Transfer.state)
    ):
        by_state[state] = count
    counters = dict.fromkeys(COUNTER_NAMES, 0)
    counters.update(dict(session.execute(select(Counter.name, Counter.value)).all()))
    return {
        "users": session.scalar(select(func.count()).select_from(User)),
        "signups_last_interval": session.scalar(
            select(func.count()).select_from(User).where(User.created_at >= since)
        ),
        "interval_minutes": interval_minutes,
        "transfers": by_state,
        "files": session.scalar(select(func.count()).select_from(StoredFile)),
        "bytes_stored": int(session.scalar(select(func.coalesce(func.sum(StoredFile.size), 0)))),
        "queue_depth": queue_depth(broker_url),
        **counters,
    }
