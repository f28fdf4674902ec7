#!/usr/bin/python3
"""fetchfleet_postgres: replication (streaming state, replay lag in bytes and seconds) and
connections, on every database host.

Reads through the host's `psql` as `postgres` over the Unix socket (peer authentication), with
the fleet's one lag function, fetchfleet.replication (shipped next to this plugin). On the
primary it reports each replica as the primary sees it: one field per physical replication slot
(a replica that is down keeps its slot, so it stays listed, as not streaming, with a growing
lag); walsenders without a slot (a pg_basebackup running) are left out unless named in
env.replicas. On a replica it reports its own walreceiver and replay delay. The host's role is
read at each run, so after a switchover the graphs follow.

    [fetchfleet_postgres]
    user postgres
    env.psql psql -d postgres
    env.replicas db2            # slot names the primary must have (reported even when missing)
    env.role primary            # the inventory's role, for the graphs of a run that gets no answer

Magic markers (munin-node-configure):
#%# family=auto
#%# capabilities=autoconf
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from typing import ClassVar

from muninplugin import Field, Graph, Plugin, Unavailable, Values, main, unique_fieldnames

from fetchfleet import replication

_CONNECTIONS = """
SELECT coalesce(state, 'unknown') AS state, count(*) AS n,
       current_setting('max_connections')::int AS max_connections
FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY state
"""
_MAX_CONNECTIONS = "SELECT current_setting('max_connections')::int AS max_connections"
STATES = (
    "active",
    "idle",
    "idle in transaction",
    "idle in transaction (aborted)",
    "fastpath function call",
    "disabled",
)


@dataclass(frozen=True)
class Snapshot:
    primary: bool
    lags: dict[str, replication.ReplicaLag]  # slot (or walsender) name -> lag, on a primary
    view: replication.ReplicaView | None  # on a replica
    connections: dict[str, int]
    max_connections: int


class Postgres(Plugin):
    name = "fetchfleet_postgres"
    service = "PostgreSQL"
    up_category = "postgresql"
    alerts: ClassVar[dict[str, str]] = {
        "fetchfleet_postgres_up": "PostgreSQL does not answer psql on this host",
        "fetchfleet_postgres_streaming": "a replica (or WAL receiver) is not streaming from the primary",
        "fetchfleet_postgres_lag_bytes": "a replica has not replayed a lot of the primary's WAL",
        "fetchfleet_postgres_lag_seconds": "a replica replays the primary's changes late",
        "fetchfleet_postgres_receiver": "this replica's walreceiver is not streaming",
        "fetchfleet_postgres_replay_delay": "this replica replays what it received late",
        "fetchfleet_postgres_connection_use": "client connections near max_connections",
    }

    def database(self) -> replication.Psql:
        return replication.Psql(shlex.split(self.setting("psql", "psql -d postgres")))

    def collect(self) -> Snapshot:
        db = self.database()
        try:
            primary = replication.is_primary(db)
            lags, view = {}, None
            if primary:
                expected = set(self.list_setting("replicas"))
                for lag in replication.replication_lag(db):
                    key = lag.slot_name or lag.name
                    if lag.slot_name or key in expected:
                        lags[key] = lag
            else:
                view = replication.replica_view(db)
            rows = db.rows(_CONNECTIONS)
            limit = (
                rows[0]["max_connections"]
                if rows
                else db.rows(_MAX_CONNECTIONS)[0]["max_connections"]
            )
        except (replication.QueryError, replication.ReplicationError) as err:
            raise Unavailable(str(err)) from err
        return Snapshot(primary, lags, view, {r["state"]: r["n"] for r in rows}, limit)

    def _replicas(self, snapshot: Snapshot | None) -> dict[str, str]:
        seen = snapshot.lags if snapshot is not None else {}
        return unique_fieldnames(sorted({*self.list_setting("replicas"), *seen}))

    def graphs(self, snapshot: Snapshot | None) -> list[Graph]:
        # The host's role as read now; when the server does not answer, the inventory's.
        role = self.setting("role", "")
        if snapshot is not None:
            role = "primary" if snapshot.primary else "replica"
        graphs = []
        if role == "primary":
            graphs = self._replication_graphs(snapshot)
        elif role == "replica":
            graphs = self._replica_graphs()
        states = tuple(
            Field(name, state, min=0, draw="AREASTACK")
            for state, name in unique_fieldnames((*STATES, "unknown")).items()
        )
        graphs += [
            Graph(
                "fetchfleet_postgres_connections",
                "PostgreSQL client connections",
                "connections",
                "postgresql",
                states,
            ),
            Graph(
                "fetchfleet_postgres_connection_use",
                "PostgreSQL connections used",
                "% of max_connections",
                "postgresql",
                (Field("used_percent", "used", min=0, max=100, warning="80", critical="95"),),
                args="--base 1000 -l 0 -u 100",
            ),
        ]
        return graphs

    def _replication_graphs(self, snapshot: Snapshot | None) -> list[Graph]:
        replicas = self._replicas(snapshot)
        streaming = tuple(
            Field(f, r, min=0, max=1, critical="1:", info=f"1 while {r} streams from this primary")
            for r, f in replicas.items()
        )
        lag_bytes = tuple(
            Field(
                f, r, min=0, warning="67108864", critical="536870912", info="WAL not yet replayed"
            )
            for r, f in replicas.items()
        )
        lag_seconds = tuple(
            Field(f, r, min=0, warning="30", critical="300", info="pg_stat_replication.replay_lag")
            for r, f in replicas.items()
        )
        category = "postgresql"
        return [
            Graph(
                "fetchfleet_postgres_streaming",
                "Replicas streaming",
                "streaming (1) or not (0)",
                category,
                streaming,
                args="--base 1000 -l 0 -u 1",
            ),
            Graph(
                "fetchfleet_postgres_lag_bytes",
                "Replica replay lag",
                "bytes",
                category,
                lag_bytes,
                args="--base 1024 -l 0",
            ),
            Graph(
                "fetchfleet_postgres_lag_seconds",
                "Replica replay lag",
                "seconds",
                category,
                lag_seconds,
            ),
        ]

    def _replica_graphs(self) -> list[Graph]:
        category = "postgresql"
        return [
            Graph(
                "fetchfleet_postgres_receiver",
                "WAL receiver streaming",
                "streaming (1) or not (0)",
                category,
                (Field("streaming", "streaming", min=0, max=1, critical="1:"),),
                args="--base 1000 -l 0 -u 1",
            ),
            Graph(
                "fetchfleet_postgres_replay_delay",
                "Replay delay on this replica",
                "seconds",
                category,
                (
                    Field("delay", "replay delay", min=0, warning="30", critical="300"),
                    Field("pending_bytes", "received, not replayed (bytes)", min=0, graph=False),
                ),
            ),
        ]

    def values(self, snapshot: Snapshot) -> Values:
        used = sum(snapshot.connections.values())
        states = unique_fieldnames((*STATES, "unknown"))
        values: Values = {
            "fetchfleet_postgres_connections": {
                name: snapshot.connections.get(state, 0) for state, name in states.items()
            },
            "fetchfleet_postgres_connection_use": {
                "used_percent": 100.0 * used / snapshot.max_connections
            },
        }
        if snapshot.view is not None:
            values["fetchfleet_postgres_receiver"] = {"streaming": int(snapshot.view.streaming)}
            values["fetchfleet_postgres_replay_delay"] = {
                "delay": snapshot.view.replay_delay_seconds,
                "pending_bytes": snapshot.view.receive_replay_bytes,
            }
            return values
        streaming, lag_bytes, lag_seconds = {}, {}, {}
        for replica, field in self._replicas(snapshot).items():
            lag = snapshot.lags.get(replica)
            streaming[field] = int(lag is not None and lag.streaming)
            lag_bytes[field] = lag.replay_lag_bytes if lag else None
            lag_seconds[field] = lag.replay_lag_seconds if lag else None
        values["fetchfleet_postgres_streaming"] = streaming
        values["fetchfleet_postgres_lag_bytes"] = lag_bytes
        values["fetchfleet_postgres_lag_seconds"] = lag_seconds
        return values


if __name__ == "__main__":
    sys.exit(main(Postgres))
