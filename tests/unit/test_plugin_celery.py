"""fetchfleet_celery against rabbitmqctl output.

No RabbitMQ runs on this machine (the broker is a lab host), so the input below is written in
the format `rabbitmqctl -q list_queues --no-table-headers` documents: tab-separated columns in
the order asked. Lab test for the lead: on mq1, `munin-run fetchfleet_celery` must match
`rabbitmqctl -q list_queues -p cloudfetch name messages_ready messages_unacknowledged consumers`,
and stopping the worker (`supervisorctl stop cloudfetch-worker` on worker1) must drop every
queue's consumers to 0 within a minute."""

from __future__ import annotations

from pathlib import Path

import fetchfleet_celery as plugin
from munin_run import replay, run

# transfers busy with one worker, media idle, index not declared yet, plus Celery's own
# per-worker queue (not one of the app's; not reported).
LIST_QUEUES = "transfers\t12\t2\t1\nmedia\t0\t0\t1\ncelery@worker1.celery.pidbox\t0\t0\t1\n"


def test_parses_the_columns_asked_for() -> None:
    queues = plugin.parse_queues(
        "name\tmessages_ready\tmessages_unacknowledged\tconsumers\n" + LIST_QUEUES
    )
    assert queues["transfers"] == plugin.Queue(ready=12, unacked=2, consumers=1)
    assert set(queues) == {"transfers", "media", "celery@worker1.celery.pidbox"}


def test_depth_and_consumers_of_the_apps_queues(tmp_path: Path) -> None:
    ctl = replay(tmp_path, "rabbitmqctl", LIST_QUEUES)
    fetch = run(plugin.Celery, env={"rabbitmqctl": ctl})
    assert fetch.values["fetchfleet_celery_queue_depth"] == {
        "transfers": "12",
        "transfers_unacked": "2",
        "media": "0",
        "media_unacked": "0",
        "index": "0",
        "index_unacked": "0",
    }
    assert fetch.values["fetchfleet_celery_consumers"] == {
        "transfers": "1",
        "media": "1",
        "index": "0",
    }
    limits = run(plugin.Celery, "config", env={"rabbitmqctl": ctl}).thresholded()
    assert limits["fetchfleet_celery_consumers"]["index"] == {"critical": "1:"}
    assert limits["fetchfleet_celery_queue_depth"]["transfers"] == {
        "warning": "100",
        "critical": "1000",
    }
    assert "transfers_unacked" not in limits["fetchfleet_celery_queue_depth"]


def test_the_command_asks_the_configured_vhost(tmp_path: Path) -> None:
    ctl = tmp_path / "rabbitmqctl"
    ctl.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/argv\n')
    ctl.chmod(0o755)
    run(plugin.Celery, env={"rabbitmqctl": str(ctl), "vhost": "staging"})
    assert (tmp_path / "argv").read_text().split() == [
        "-q",
        "list_queues",
        "-p",
        "staging",
        "--no-table-headers",
        *plugin.COLUMNS,
    ]


def test_a_broker_that_is_down_is_reported_down(tmp_path: Path) -> None:
    error = "Error: unable to perform an operation on node 'rabbit@mq1'. Please see diagnostics information and suggestions below.\n"
    ctl = replay(tmp_path, "rabbitmqctl", "", code=69, stderr=error)
    fetch = run(plugin.Celery, env={"rabbitmqctl": ctl})
    assert fetch.code == 0 and fetch.values["fetchfleet_celery_up"] == {"up": "0"}
    assert fetch.values["fetchfleet_celery_consumers"] == {
        "transfers": "U",
        "media": "U",
        "index": "U",
    }
    assert "unable to perform an operation on node" in fetch.stderr
