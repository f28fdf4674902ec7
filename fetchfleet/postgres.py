"""PostgreSQL from the control machine (psycopg): short-lived connections, and replication lag.

The lag itself is defined once, in `fetchfleet.replication` (standard library only, so the
Munin plugin on the database hosts runs the same code through psql); this module only lets it
read through psycopg connections. Its callers today are tests: tests/lab/test_postgresql.py
(lag under pgbench, from the lab machine) and tests/unit/test_replication.py (both readers agree);
no `fab` task and no monitoring code calls it. It needs a role that may read pg_stat_replication in full: a
superuser or a member of pg_monitor (the postgresql role creates `postgresql_monitor_user`).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from fetchfleet import replication
from fetchfleet.replication import REPLAY_WATCH_SECONDS, ReplicaLag, ReplicationError

__all__ = [
    "REPLAY_WATCH_SECONDS",
    "PsycopgDatabase",
    "ReplicaLag",
    "ReplicationError",
    "connect",
    "replication_lag",
]


class PsycopgDatabase:
    """A psycopg connection as a `replication.Database`: each query leaves no transaction open
    on the caller's connection."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.where = f"{conn.info.host}:{conn.info.port}"

    def rows(self, sql: str) -> list[dict[str, Any]]:
        try:
            with self.conn.cursor(row_factory=dict_row) as cur:
                cur.execute(sql)
                rows = cur.fetchall()
        except psycopg.OperationalError as err:
            raise replication.QueryError(f"{self.where}: {err}") from err
        self.conn.rollback()
        return rows


def replication_lag(
    primary: psycopg.Connection, replica: psycopg.Connection | None = None
) -> list[ReplicaLag]:
    """Lag of every physical replica of `primary`, sorted by name (`replication.replication_lag`).

    With `replica`, that replica's own view (received vs replayed, how long its replay takes)
    is added to its row, matched by its application_name.
    """
    return replication.replication_lag(
        PsycopgDatabase(primary), PsycopgDatabase(replica) if replica is not None else None
    )


def connect(host: str, user: str, password: str, dbname: str = "postgres") -> psycopg.Connection:
    """A short-lived connection for checks: fails within 5 s instead of hanging on a firewall."""
    return psycopg.connect(
        host=host,
        user=user,
        password=password,
        dbname=dbname,
        connect_timeout=5,
        application_name="fetchfleet",
    )
