#!/usr/bin/python3
"""fetchfleet_celery: the Celery queues on the broker: messages waiting, and consumers (rabbitmq).

Reads `rabbitmqctl list_queues` of the app's vhost (root: rabbitmqctl needs the Erlang cookie;
the management plugin is off in this fleet). Queues the app declares but nobody has created yet
count as empty with no consumer. Zero consumers on a queue means no worker takes its tasks.

    [fetchfleet_celery]
    user root
    env.vhost cloudfetch
    env.queues transfers media index

Magic markers (munin-node-configure):
#%# family=auto
#%# capabilities=autoconf
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass
from typing import ClassVar

from muninplugin import Field, Graph, Plugin, Unavailable, Values, main, unique_fieldnames

COLUMNS = ("name", "messages_ready", "messages_unacknowledged", "consumers")


@dataclass(frozen=True)
class Queue:
    ready: int
    unacked: int
    consumers: int


def parse_queues(text: str) -> dict[str, Queue]:
    """Queue name -> figures, from `rabbitmqctl -q list_queues --no-table-headers` with the
    COLUMNS above (tab-separated). Header or informational lines, if any, are skipped."""
    queues = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == len(COLUMNS) and all(p.strip().isdigit() for p in parts[1:]):
            ready, unacked, consumers = (int(p) for p in parts[1:])
            queues[parts[0]] = Queue(ready, unacked, consumers)
    return queues


class Celery(Plugin):
    name = "fetchfleet_celery"
    service = "RabbitMQ (rabbitmqctl)"
    up_category = "celery"
    alerts: ClassVar[dict[str, str]] = {
        "fetchfleet_celery_up": "rabbitmqctl cannot reach the broker on this host",
        "fetchfleet_celery_queue_depth": "tasks are piling up in a Celery queue",
        "fetchfleet_celery_consumers": "no Celery worker consumes a queue",
    }

    def collect(self) -> dict[str, Queue]:
        command = shlex.split(self.setting("rabbitmqctl", "/usr/sbin/rabbitmqctl"))
        vhost = self.setting("vhost", "cloudfetch")
        argv = [*command, "-q", "list_queues", "-p", vhost, "--no-table-headers", *COLUMNS]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise Unavailable(f"{' '.join(argv)}: {err}") from err
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
            raise Unavailable(f"{' '.join(command)} list_queues -p {vhost}: {detail}")
        return parse_queues(done.stdout)

    def _names(self) -> dict[str, str]:
        return unique_fieldnames(self.list_setting("queues", ("transfers", "media", "index")))

    def graphs(self, snapshot: dict[str, Queue] | None) -> list[Graph]:
        names = self._names()
        depth = []
        for queue, field in names.items():
            depth.append(
                Field(
                    field,
                    f"{queue} waiting",
                    min=0,
                    warning="100",
                    critical="1000",
                    info=f"messages ready in {queue}, not yet taken by a worker",
                )
            )
            depth.append(
                Field(f"{field}_unacked", f"{queue} in progress", min=0, info="taken, not acked")
            )
        consumers = tuple(
            Field(field, queue, min=0, critical="1:", info=f"workers consuming {queue}")
            for queue, field in names.items()
        )
        vhost = self.setting("vhost", "cloudfetch")
        return [
            Graph(
                "fetchfleet_celery_queue_depth",
                f"Celery queue depth ({vhost})",
                "messages",
                "celery",
                tuple(depth),
                info="Tasks waiting in each of the app's queues, and those being worked on.",
            ),
            Graph(
                "fetchfleet_celery_consumers",
                f"Celery consumers per queue ({vhost})",
                "consumers",
                "celery",
                consumers,
                info="Consumers (Celery worker processes' channels) of each queue; 0 pages.",
            ),
        ]

    def values(self, snapshot: dict[str, Queue]) -> Values:
        depth: dict[str, int | float | None] = {}
        consumers: dict[str, int | float | None] = {}
        for queue, field in self._names().items():
            figures = snapshot.get(queue, Queue(0, 0, 0))
            depth[field] = figures.ready
            depth[f"{field}_unacked"] = figures.unacked
            consumers[field] = figures.consumers
        return {"fetchfleet_celery_queue_depth": depth, "fetchfleet_celery_consumers": consumers}


if __name__ == "__main__":
    sys.exit(main(Celery))
