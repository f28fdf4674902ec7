"""Celery, configured by each entry point (Flask's `celery_init_app` pattern): the web app
(cloudfetch.web.create_app), which only publishes, and the worker (cloudfetch.worker), which
consumes. The tasks in cloudfetch.tasks are `shared_task`s bound to whichever app is current, so
neither they nor cloudfetch.services need to import an app, and nothing imports back."""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from cloudfetch.config import Settings

QUEUES = ("transfers", "media", "index")
POLL_SECONDS = 15.0


def celery_init_app(settings: Settings) -> Celery:
    """A Celery app for these settings, made the process's current app (the one `.delay()` on a
    task publishes through)."""
    # `include`: a worker imports the tasks when it starts, so it knows every task by name.
    app = Celery("cloudfetch", include=["cloudfetch.tasks"])
    app.conf.update(
        broker_url=settings.broker_url,
        task_queues=[Queue(name, durable=True) for name in QUEUES],
        task_default_queue="transfers",
        task_routes={
            "cloudfetch.make_thumbnail": {"queue": "media"},
            "cloudfetch.index_files": {"queue": "index"},
            "cloudfetch.unindex_files": {"queue": "index"},
        },
        task_default_delivery_mode="persistent",
        # A task is acknowledged only when it has finished, and given back to the queue when
        # its worker dies, so a killed worker or a restarted broker loses nothing.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        # A web request that enqueues must fail fast (503) when the broker is down, not hang.
        broker_connection_timeout=2,
        broker_connection_retry_on_startup=True,
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        beat_schedule={
            "poll-torrents": {"task": "cloudfetch.poll_torrents", "schedule": POLL_SECONDS}
        },
    )
    app.set_default()
    return app
