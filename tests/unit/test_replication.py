"""fetchfleet.replication, the one lag function, against a real primary and streaming replica:
read through psql (as the Munin plugin does on the database hosts) and through psycopg (as the
fab tasks and the lab tests do), it must say the same thing."""

from __future__ import annotations

import ast
import sys
import time
from pathlib import Path

import psycopg
import pytest
from conftest import Pair

from fetchfleet import postgres, replication
from fetchfleet.replication import Psql, QueryError, ReplicationError

# What may differ between two looks a moment apart; everything else must be equal.
MOVING = {"replay_lag_seconds", "replica_replay_delay_seconds"}


def psql(server) -> Psql:
    return Psql(server.psql("-U", "postgres", "-d", "postgres"), where=server.name)


def psycopg_conn(server) -> psycopg.Connection:
    return psycopg.connect(
        host=str(server.socket_dir), port=server.port, user="postgres", dbname="postgres"
    )


def steady(rows: list[replication.ReplicaLag]) -> list[dict]:
    return [{k: v for k, v in row.__dict__.items() if k not in MOVING} for row in rows]


def test_the_module_shipped_to_hosts_needs_only_the_standard_library() -> None:
    tree = ast.parse(Path(replication.__file__).read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_psql_and_psycopg_read_the_same_lag(pg_pair: Pair) -> None:
    pg_pair.wait_streaming()
    by_psql = replication.replication_lag(psql(pg_pair.primary), psql(pg_pair.replica))
    with psycopg_conn(pg_pair.primary) as p, psycopg_conn(pg_pair.replica) as r:
        by_psycopg = postgres.replication_lag(p, r)
    assert steady(by_psql) == steady(by_psycopg)
    [row] = by_psql
    assert row.name == pg_pair.slot and row.slot_name == pg_pair.slot
    assert row.streaming and row.slot_active is True
    assert row.replica_receiver_status == "streaming"
    assert isinstance(row.replay_lag_seconds, float)


def test_caught_up_replica_has_no_lag(pg_pair: Pair) -> None:
    pg_pair.primary.sql("CREATE TABLE IF NOT EXISTS probe (n int)")
    pg_pair.primary.sql("INSERT INTO probe VALUES (1)")
    deadline = time.monotonic() + 10
    while (row := replication.replication_lag(psql(pg_pair.primary))[0]).replay_lag_bytes:
        assert time.monotonic() < deadline, row
        time.sleep(0.1)
    assert row.replay_lag_seconds is not None and row.replay_lag_seconds >= 0.0
    view = replication.replica_view(psql(pg_pair.replica))
    assert view.streaming and view.application_name == pg_pair.slot


def test_roles_are_checked(pg_pair: Pair) -> None:
    with pytest.raises(ReplicationError, match="replica is in recovery: not a primary"):
        replication.replication_lag(psql(pg_pair.replica))
    with pytest.raises(ReplicationError, match="primary is not in recovery: not a replica"):
        replication.replica_view(psql(pg_pair.primary))
    assert replication.is_primary(psql(pg_pair.primary))
    assert not replication.is_primary(psql(pg_pair.replica))


def test_a_server_that_is_not_there_is_a_query_error(tmp_path: Path) -> None:
    gone = Psql(["psql", "-h", str(tmp_path), "-p", "1", "-U", "postgres"], where="nowhere")
    with pytest.raises(QueryError, match=r"nowhere: .*psql"):
        replication.is_primary(gone)


def test_a_stopped_replica_shows_as_disconnected_and_its_lag_grows(pg_pair: Pair) -> None:
    pg_pair.replica.stop()
    try:
        before = replication.replication_lag(psql(pg_pair.primary))
        pg_pair.primary.sql("INSERT INTO probe SELECT generate_series(1, 10000)")
        after = replication.replication_lag(psql(pg_pair.primary))
    finally:
        pg_pair.replica.start()
    [was], [now] = before, after
    assert (was.name, was.state, was.slot_active) == (pg_pair.slot, "disconnected", False)
    assert not now.streaming and now.replay_lag_seconds is None
    assert now.replay_lag_bytes > was.replay_lag_bytes >= 0
    pg_pair.wait_streaming()
