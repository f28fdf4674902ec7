#!/usr/bin/python3
"""fetchfleet_pgbouncer: pgbouncer's pools: clients waiting for a server connection, how long
the oldest has waited, and active/idle connections (the database host running pgbouncer).

Reads `SHOW POOLS` on pgbouncer's admin console through psql, as `postgres` over the Unix socket:
pgbouncer lets the user `pgbouncer` in without a password from a socket peer with its own uid.
Waiting clients mean the pool is exhausted: requests queue in front of the database.

    [fetchfleet_pgbouncer]
    user postgres
    env.psql psql -h /var/run/postgresql -p 6432 -U pgbouncer -d pgbouncer

Magic markers (munin-node-configure):
#%# family=manual
#%# capabilities=autoconf
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from typing import ClassVar

from muninplugin import Field, Graph, Plugin, Unavailable, Values, main, unique_fieldnames

ADMIN_DATABASE = "pgbouncer"


@dataclass(frozen=True)
class Pool:
    cl_active: int
    cl_waiting: int
    sv_active: int
    sv_idle: int
    maxwait_seconds: float


def parse_pools(text: str) -> dict[str, Pool]:
    """'database/user' -> pool figures, from `SHOW POOLS` printed by psql -A -F '\\t' with its
    header line. pgbouncer's own admin pool is left out."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return {}
    header = lines[0].split("\t")
    pools = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split("\t"), strict=False))
        if row.get("database") == ADMIN_DATABASE:
            continue
        pools[f"{row['database']}/{row['user']}"] = Pool(
            cl_active=int(row["cl_active"]),
            cl_waiting=int(row["cl_waiting"]),
            sv_active=int(row["sv_active"]),
            sv_idle=int(row["sv_idle"]),
            maxwait_seconds=int(row["maxwait"]) + int(row.get("maxwait_us", 0)) / 1e6,
        )
    return pools


class Pgbouncer(Plugin):
    name = "fetchfleet_pgbouncer"
    service = "pgbouncer"
    up_category = "postgresql"
    alerts: ClassVar[dict[str, str]] = {
        "fetchfleet_pgbouncer_up": "pgbouncer does not answer on this host: the app has no database",
        "fetchfleet_pgbouncer_waiting": "clients wait for a pgbouncer server connection",
        "fetchfleet_pgbouncer_maxwait": "a client has waited long for a pgbouncer server connection",
    }

    def collect(self) -> dict[str, Pool]:
        command = shlex.split(
            self.setting("psql", "psql -h /var/run/postgresql -p 6432 -U pgbouncer -d pgbouncer")
        )
        argv = [*command, "-X", "-q", "-A", "-F", "\t", "-P", "footer=off", "-c", "SHOW POOLS"]
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=15,
                env={**os.environ, "PGCONNECT_TIMEOUT": "5"},
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise Unavailable(f"{' '.join(command)}: {err}") from err
        if done.returncode != 0:
            detail = done.stderr.strip() or f"exit status {done.returncode}"
            raise Unavailable(f"{' '.join(command)}: {detail}")
        try:
            return parse_pools(done.stdout)
        except (KeyError, ValueError) as err:
            raise Unavailable(f"SHOW POOLS printed something unexpected: {err!r}") from err

    def graphs(self, snapshot: dict[str, Pool] | None) -> list[Graph]:
        pools = unique_fieldnames(sorted(snapshot or {}))
        waiting = tuple(
            Field(f, f"{p} waiting", min=0, warning="5", critical="20") for p, f in pools.items()
        )
        maxwait = tuple(
            Field(
                f,
                p,
                min=0,
                warning="1",
                critical="5",
                info="seconds the oldest waiting client waits",
            )
            for p, f in pools.items()
        )
        connections = tuple(
            Field(f"{f}_{kind}", f"{p} {label}", min=0)
            for p, f in pools.items()
            for kind, label in (
                ("cl", "clients active"),
                ("sv", "server active"),
                ("idle", "server idle"),
            )
        )
        category = "postgresql"
        return [
            Graph(
                "fetchfleet_pgbouncer_waiting",
                "pgbouncer clients waiting",
                "clients",
                category,
                waiting,
            ),
            Graph(
                "fetchfleet_pgbouncer_maxwait",
                "pgbouncer longest wait",
                "seconds",
                category,
                maxwait,
            ),
            Graph(
                "fetchfleet_pgbouncer_connections",
                "pgbouncer connections",
                "connections",
                category,
                connections,
            ),
        ]

    def values(self, snapshot: dict[str, Pool]) -> Values:
        pools = unique_fieldnames(sorted(snapshot))
        connections: dict[str, int | float | None] = {}
        for pool, f in pools.items():
            figures = snapshot[pool]
            connections.update(
                {
                    f"{f}_cl": figures.cl_active,
                    f"{f}_sv": figures.sv_active,
                    f"{f}_idle": figures.sv_idle,
                }
            )
        return {
            "fetchfleet_pgbouncer_waiting": {f: snapshot[p].cl_waiting for p, f in pools.items()},
            "fetchfleet_pgbouncer_maxwait": {
                f: snapshot[p].maxwait_seconds for p, f in pools.items()
            },
            "fetchfleet_pgbouncer_connections": connections,
        }


if __name__ == "__main__":
    sys.exit(main(Pgbouncer))
