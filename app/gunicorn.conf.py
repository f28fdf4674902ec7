"""Default gunicorn settings: `gunicorn -c gunicorn.conf.py cloudfetch.wsgi:app`.
The Ansible role may template its own; CLOUDFETCH_BIND and CLOUDFETCH_WORKERS override here."""

import multiprocessing
import os

bind = os.environ.get("CLOUDFETCH_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("CLOUDFETCH_WORKERS", multiprocessing.cpu_count() * 2 + 1))
# Requests never do long work (that is Celery's), so a request taking this long is stuck.
timeout = 30
graceful_timeout = 30
# Loading the app in the master means a bad setting stops gunicorn at once with its name,
# instead of every worker failing to boot in a loop.
preload_app = True
accesslog = "-"
errorlog = "-"


def worker_exit(server, worker):  # type: ignore[no-untyped-def]
    """Write the exiting worker's last request counts to the database."""
    from cloudfetch.wsgi import app

    app.extensions["cloudfetch.request_counter"].flush()
