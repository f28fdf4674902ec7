"""PostgreSQL replication, as seen from the primary (and optionally from a replica).

`replication_lag` is the one query the fleet uses to tell how far each replica is behind: the
`fab` tasks, the lab tests and the monitoring checks all call it, so "lag" means one thing.
It needs a role that may read pg_stat_replication in full: a superuser or a member of
pg_monitor (the postgresql role creates `postgresql_monitor_user` for this).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
from psycopg.rows import dict_row

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
ORDER BY 1
"""

# On the replica: what it has received and replayed, and how old the last replayed commit is.
_REPLICA_QUERY = """
SELECT pg_is_in_recovery()                                              AS in_recovery,
       pg_last_wal_receive_lsn()::text                                  AS receive_lsn,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint
                                                                        AS receive_replay_bytes,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
                                                                        AS last_commit_age_seconds,
       (SELECT status FROM pg_stat_wal_receiver)                        AS receiver_status
"""

# Has the replica replayed up to the position it had received at the first look?
_REPLAYED_PAST = "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s::pg_lsn) >= 0 AS done"

# How long `replication_lag` watches a replica that has WAL pending before it reports the age of
# the last replayed commit instead of a measured delay.
REPLAY_WATCH_SECONDS = 1.0


class ReplicationError(Exception):
    """The connection does not point at what the caller said it does."""


@dataclass(frozen=True)
class ReplicaLag:
    """How far one replica is behind the primary.

    Byte lags are measured from the primary's current WAL position (pg_wal_lsn_diff).
    `replay_lag_seconds` is PostgreSQL's own measure (pg_stat_replication.replay_lag): 0.0 when
    the replica has replayed everything, None when it is behind but has not reported a time yet
    or is disconnected. The `replica_*` fields are filled only when a replica connection is given.
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


def replication_lag(
    primary: psycopg.Connection, replica: psycopg.Connection | None = None
) -> list[ReplicaLag]:
    """Lag of every physical replica of `primary`, sorted by name.

    With `replica`, that replica's own view (received vs replayed, age of the last replayed
    commit) is added to its row, matched by its application_name.
    """
    with primary.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT pg_is_in_recovery() AS in_recovery")
        row = cur.fetchone()
        if row is None or row["in_recovery"]:
            raise ReplicationError(f"{_where(primary)} is in recovery: not a primary")
        cur.execute(_PRIMARY_QUERY)
        rows = cur.fetchall()
    primary.rollback()  # read-only: leave no transaction open on the caller's connection
    lags = []
    for row in rows:
        if row["replay_lag_bytes"] == 0 and row["replay_lag_seconds"] is None:
            row["replay_lag_seconds"] = 0.0
        lags.append(ReplicaLag(**row))
    if replica is None:
        return lags
    view = _replica_view(replica)
    matched = [lag for lag in lags if lag.name == view["application_name"]]
    if not matched:
        known = ", ".join(lag.name for lag in lags) or "none"
        raise ReplicationError(
            f"{_where(replica)} (application_name {view['application_name']!r}) is not among "
            f"the replicas the primary knows ({known}); check its primary_conninfo"
        )
    extra = {
        "replica_receive_replay_bytes": view["receive_replay_bytes"],
        "replica_replay_delay_seconds": _replay_delay(replica, view),
        "replica_receiver_status": view["receiver_status"],
    }
    return [ReplicaLag(**{**lag.__dict__, **extra}) if lag in matched else lag for lag in lags]


def _replica_view(replica: psycopg.Connection) -> dict:
    with replica.cursor(row_factory=dict_row) as cur:
        cur.execute(_REPLICA_QUERY)
        view = cur.fetchone()
        if view is None or not view["in_recovery"]:
            raise ReplicationError(f"{_where(replica)} is not in recovery: not a replica")
        # The primary lists a connected replica under its walreceiver's application_name, and
        # a disconnected one under its slot's name.
        cur.execute(
            "SELECT coalesce((SELECT substring(conninfo FROM 'application_name=([^ ]+)')"
            " FROM pg_stat_wal_receiver), current_setting('primary_slot_name')) AS name"
        )
        named = cur.fetchone()
    replica.rollback()
    view["application_name"] = named["name"] if named else None
    return view


def _replay_delay(replica: psycopg.Connection, view: dict) -> float | None:
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
    if view["receive_lsn"] is None:
        return view["last_commit_age_seconds"]
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < REPLAY_WATCH_SECONDS:
        with replica.cursor(row_factory=dict_row) as cur:
            cur.execute(_REPLAYED_PAST, (view["receive_lsn"],))
            done = cur.fetchone()["done"]
        replica.rollback()
        if done:
            return round(elapsed, 3)
        time.sleep(0.05)
    age = view["last_commit_age_seconds"]
    return elapsed if age is None else max(age, elapsed)


def _where(conn: psycopg.Connection) -> str:
    return f"{conn.info.host}:{conn.info.port}"


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
