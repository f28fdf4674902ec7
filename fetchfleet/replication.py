"""PostgreSQL replication lag: the one definition the fleet uses.

`replication_lag` tells how far each replica is behind: the Munin plugin on the database hosts
calls it through `Psql` (the host's own `psql`), and the lab tests from the control machine
through `fetchfleet.postgres` (psycopg connections), and `fab db.status` (fetchfleet.dbstatus)
through psql on each database host over SSH, so "lag" means one thing everywhere.

This module uses the standard library only, on purpose: roles/munin ships this very file to the
database hosts, next to the plugins, where munin-node runs them with the system python3 (no
virtualenv, no PostgreSQL driver). A database is anything with a `where` and a `rows(sql)`;
queries take no parameters (the one value put into SQL, an LSN, is checked first).

The caller needs a role that may read pg_stat_replication in full: a superuser (the plugin runs
as `postgres` over the Unix socket) or a member of pg_monitor (`postgresql_monitor_user`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

# One row per physical standby: connected ones from pg_stat_replication, and also slots no
# walsender uses any more (a replica that is down still holds WAL back: its lag keeps growing).
_PRIMARY_QUERY = """
WITH current AS (SELECT pg_current_wal_lsn() AS lsn)
SELECT coalesce(r.application_name, s.slot_name)                       AS name,
       host(r.client_addr)                                              AS client_addr,
       coalesce(r.state, 'disconnected')                                AS state,
       r.sync_state,
       s.slot_name,
       s.active                                                         AS slot_active,
       pg_wal_lsn_diff(c.lsn, r.sent_lsn)::bigint                       AS sent_lag_bytes,
       pg_wal_lsn_diff(c.lsn, r.write_lsn)::bigint                      AS write_lag_bytes,
       pg_wal_lsn_diff(c.lsn, r.flush_lsn)::bigint                      AS flush_lag_bytes,
       pg_wal_lsn_diff(c.lsn, coalesce(r.replay_lsn, s.restart_lsn))::bigint
                                                                        AS replay_lag_bytes,
       extract(epoch FROM r.replay_lag)::float8                         AS replay_lag_seconds,
       pg_wal_lsn_diff(c.lsn, s.restart_lsn)::bigint                    AS slot_retained_bytes
FROM pg_stat_replication r
FULL JOIN (SELECT * FROM pg_replication_slots WHERE slot_type = 'physical') s
       ON s.active_pid = r.pid
CROSS JOIN current c
"""

_IN_RECOVERY = "SELECT pg_is_in_recovery() AS in_recovery"

# On the replica: what it has received and replayed, and how old the last replayed commit is.
_REPLICA_QUERY = """
SELECT pg_is_in_recovery()                                              AS in_recovery,
       pg_last_wal_receive_lsn()::text                                  AS receive_lsn,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint
                                                                        AS receive_replay_bytes,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
                                                                        AS last_commit_age_seconds,
       (SELECT status FROM pg_stat_wal_receiver)                        AS receiver_status,
       -- The primary lists a connected replica under its walreceiver's application_name, and
       -- a disconnected one under its slot's name.
       coalesce((SELECT substring(conninfo FROM 'application_name=([^ ]+)')
                 FROM pg_stat_wal_receiver),
                current_setting('primary_slot_name'))                   AS application_name
"""

# Has the replica replayed up to the position it had received at the first look?
_REPLAYED_PAST = "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '{lsn}'::pg_lsn) >= 0 AS done"
_LSN = re.compile(r"^[0-9A-F]{1,8}/[0-9A-F]{1,8}$")

# How long `replication_lag` watches a replica that has WAL pending before it reports the age of
# the last replayed commit instead of a measured delay.
REPLAY_WATCH_SECONDS = 1.0


class ReplicationError(Exception):
    """The database does not play the part the caller said it does."""


class QueryError(Exception):
    """The database could not be asked (not running, refused, psql failed)."""


class Database(Protocol):
    """Where a query goes: `where` names it in errors; `rows` runs one read-only query."""

    where: str

    def rows(self, sql: str) -> list[dict[str, Any]]: ...


class Psql:
    """A database read through `psql`, one run per query, each answered as one JSON array.

    `command` is psql and its connection options, e.g. ("psql", "-h", "/var/run/postgresql",
    "-d", "postgres"); connection settings may also come from PG* variables in `env`.
    """

    def __init__(
        self,
        command: Sequence[str] = ("psql",),
        where: str = "local PostgreSQL",
        env: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.command = list(command)
        self.where = where
        # A server that does not answer must not hold munin-node's plugin run.
        self.env = {**os.environ, "PGCONNECT_TIMEOUT": "5", **(env or {})}
        self.timeout = timeout

    def rows(self, sql: str) -> list[dict[str, Any]]:
        argv = [*self.command, *psql_json_args(sql)]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, env=self.env, timeout=self.timeout
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise QueryError(f"{self.where}: {' '.join(self.command)}: {err}") from err
        if done.returncode != 0:
            detail = done.stderr.strip() or f"exit status {done.returncode}"
            raise QueryError(f"{self.where}: {' '.join(self.command)}: {detail}")
        return psql_rows(self.where, done.stdout)


def psql_json_args(sql: str) -> list[str]:
    """psql's options that print the rows of `sql` as one JSON array (for any psql: here, or on
    a host over SSH)."""
    wrapped = f"SELECT coalesce(json_agg(q), '[]'::json) FROM ({sql}) q"
    return ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", wrapped]


def psql_rows(where: str, stdout: str) -> list[dict[str, Any]]:
    try:
        return json.loads(stdout)
    except json.JSONDecodeError as err:
        raise QueryError(f"{where}: psql printed no JSON: {stdout[:200]!r}") from err


@dataclass(frozen=True)
class ReplicaLag:
    """How far one replica is behind the primary.

    Byte lags are measured from the primary's current WAL position (pg_wal_lsn_diff).
    `replay_lag_seconds` is PostgreSQL's own measure (pg_stat_replication.replay_lag): 0.0 when
    the replica has replayed everything, None when it is behind but has not reported a time yet
    or is disconnected. The `replica_*` fields are filled only when a replica is given.
    """

    name: str
    client_addr: str | None
    state: str
    sync_state: str | None
    slot_name: str | None
    slot_active: bool | None
    sent_lag_bytes: int | None
    write_lag_bytes: int | None
    flush_lag_bytes: int | None
    replay_lag_bytes: int | None
    replay_lag_seconds: float | None
    slot_retained_bytes: int | None
    replica_receive_replay_bytes: int | None = None
    replica_replay_delay_seconds: float | None = None
    replica_receiver_status: str | None = None

    @property
    def streaming(self) -> bool:
        return self.state == "streaming"


@dataclass(frozen=True)
class ReplicaView:
    """A replica's own view: what its walreceiver does and how far its replay trails."""

    application_name: str | None
    receiver_status: str | None
    receive_replay_bytes: int | None
    replay_delay_seconds: float | None

    @property
    def streaming(self) -> bool:
        return self.receiver_status == "streaming"


def is_primary(db: Database) -> bool:
    rows = db.rows(_IN_RECOVERY)
    if not rows:
        raise QueryError(f"{db.where}: pg_is_in_recovery() returned no row")
    return not rows[0]["in_recovery"]


def replication_lag(primary: Database, replica: Database | None = None) -> list[ReplicaLag]:
    """Lag of every physical replica of `primary`, sorted by name.

    With `replica`, that replica's own view (received vs replayed, how long its replay takes)
    is added to its row, matched by its application_name.
    """
    if not is_primary(primary):
        raise ReplicationError(f"{primary.where} is in recovery: not a primary")
    lags = sorted((_lag(row) for row in primary.rows(_PRIMARY_QUERY)), key=lambda lag: lag.name)
    if replica is None:
        return lags
    view = replica_view(replica)
    matched = [lag for lag in lags if lag.name == view.application_name]
    if not matched:
        known = ", ".join(lag.name for lag in lags) or "none"
        raise ReplicationError(
            f"{replica.where} (application_name {view.application_name!r}) is not among "
            f"the replicas the primary knows ({known}); check its primary_conninfo"
        )
    extra = {
        "replica_receive_replay_bytes": view.receive_replay_bytes,
        "replica_replay_delay_seconds": view.replay_delay_seconds,
        "replica_receiver_status": view.receiver_status,
    }
    return [ReplicaLag(**{**lag.__dict__, **extra}) if lag in matched else lag for lag in lags]


def replica_view(replica: Database) -> ReplicaView:
    """The replica's walreceiver state and replay delay (see `_replay_delay`)."""
    rows = replica.rows(_REPLICA_QUERY)
    if not rows or not rows[0]["in_recovery"]:
        raise ReplicationError(f"{replica.where} is not in recovery: not a replica")
    view = rows[0]
    return ReplicaView(
        application_name=view["application_name"],
        receiver_status=view["receiver_status"],
        receive_replay_bytes=view["receive_replay_bytes"],
        replay_delay_seconds=_replay_delay(replica, view),
    )


_SECONDS = ("replay_lag_seconds",)
_LAG_FIELDS = {f.name for f in fields(ReplicaLag)}


def _lag(row: dict[str, Any]) -> ReplicaLag:
    # JSON (psql) prints 0.0 as 0; psycopg gives a float either way.
    row = {k: (float(v) if k in _SECONDS and v is not None else v) for k, v in row.items()}
    if row["replay_lag_bytes"] == 0 and row["replay_lag_seconds"] is None:
        row["replay_lag_seconds"] = 0.0
    return ReplicaLag(**{k: v for k, v in row.items() if k in _LAG_FIELDS})


def _replay_delay(replica: Database, view: dict[str, Any]) -> float | None:
    """Seconds the replica takes to replay what it has received.

    0.0 when nothing is pending. Otherwise the replica is watched for up to
    REPLAY_WATCH_SECONDS: if it replays past what it had received, the time that took is the
    delay (a record that arrived a moment ago is not "lag"); if it does not, the delay is the
    age of the last replayed commit (an upper bound), or the time watched when that is larger.
    The age alone would be wrong on a quiet primary: a checkpoint record received just now sits
    next to a commit replayed minutes ago.
    """
    pending = view["receive_replay_bytes"]
    if pending is not None and pending <= 0:
        return 0.0
    age = view["last_commit_age_seconds"]
    lsn = view["receive_lsn"]
    if lsn is None:
        return None if age is None else float(age)
    if not _LSN.match(lsn):
        raise QueryError(f"{replica.where}: unexpected WAL position {lsn!r}")
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < REPLAY_WATCH_SECONDS:
        if replica.rows(_REPLAYED_PAST.format(lsn=lsn))[0]["done"]:
            return round(elapsed, 3)
        time.sleep(0.05)
    return elapsed if age is None else max(float(age), elapsed)
