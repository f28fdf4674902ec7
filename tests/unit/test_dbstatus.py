"""fetchfleet.dbstatus (`fab db.status`) against a real primary and streaming replica on this
machine (conftest's pg_pair), asked through psql by the same runner interface as a host."""

from __future__ import annotations

import shlex
from pathlib import Path

from conftest import Pair, Server

from fetchfleet import dbstatus as D
from fetchfleet.remote import Local


def db(server: Server, name: str) -> D.RunnerPsql:
    return D.RunnerPsql(Local(), name, shlex.join(server.psql("-U", "postgres", "-d", "postgres")))


def hosts(pair: Pair, primary_expected: str = "primary") -> list[D.DbHost]:
    replica_expected = "replica" if primary_expected == "primary" else "primary"
    return [
        D.DbHost("primary", "192.0.2.1", primary_expected, db(pair.primary, "primary")),
        D.DbHost(pair.slot, "192.0.2.2", replica_expected, db(pair.replica, pair.slot)),
    ]


def names(pair: Pair) -> dict[str, str]:
    # The replica's walreceiver connects to the primary's socket directory: its "address".
    return {str(pair.primary.socket_dir): "primary", "192.0.2.2": pair.slot}


def test_one_row_per_host_with_the_primarys_view_of_its_replica(pg_pair: Pair) -> None:
    pg_pair.wait_streaming()
    result = D.status(hosts(pg_pair), names(pg_pair))
    assert result.problems == []
    primary, replica = result.rows
    assert (primary.role, replica.role) == ("primary", "replica")
    assert primary.timeline == replica.timeline == 1
    assert replica.upstream == "primary"
    assert (replica.state, replica.sync, replica.slot) == ("streaming", "async", pg_pair.slot)
    assert replica.lag_bytes is not None and replica.lag_bytes >= 0
    assert primary.state is None and primary.lag_bytes is None
    text = D.render(result)
    assert "no problems" in text and "streaming" in text.splitlines()[2]


def test_a_stopped_replica_is_down_and_not_streaming(pg_pair: Pair) -> None:
    pg_pair.replica.stop()
    try:
        result = D.status(hosts(pg_pair), names(pg_pair))
    finally:
        pg_pair.replica.start()
    assert result.rows[1].role == "down"
    assert result.rows[1].state == "disconnected" and result.rows[1].slot == pg_pair.slot
    assert any(p.startswith(f"{pg_pair.slot}: does not answer") for p in result.problems)
    assert any("not streaming" in p and "disconnected" in p for p in result.problems)
    pg_pair.wait_streaming()


def test_roles_that_disagree_with_the_inventory_are_problems(pg_pair: Pair) -> None:
    result = D.status(hosts(pg_pair, primary_expected="replica"), names(pg_pair))
    assert "primary is a primary, the inventory has it in db_replicas" in result.problems
    assert f"{pg_pair.slot} is a replica, the inventory has it in db_primary" in result.problems


def test_no_primary_answering_is_a_problem(tmp_path: Path) -> None:
    gone = Server("gone", tmp_path, 1, tmp_path, tmp_path / "log")
    result = D.status([D.DbHost("db1", "192.0.2.1", "primary", db(gone, "db1"))])
    assert "no primary answers: the data tier takes no writes" in result.problems
    assert result.rows[0].role == "down"
    assert any(p.startswith("db1: does not answer (db1: psql: ") for p in result.problems)


def test_pgbouncer_target_is_read_from_its_configuration(tmp_path: Path) -> None:
    ini = tmp_path / "pgbouncer.ini"
    ini.write_text(
        ";; managed by Ansible\n[databases]\n"
        ";old = host=192.0.2.9 port=5432 dbname=old\n"
        "cloudfetch = host=127.0.0.1 port=5432 dbname=cloudfetch\n"
        "reports = host=192.0.2.2 port=6432 dbname=reports\n\n[pgbouncer]\nlisten_port = 6432\n"
    )
    target = D.pgbouncer_target(Local(), {"192.0.2.2": "db2"}, str(ini))
    assert target == "self:5432,db2:6432"  # sorted by address
    assert D.pgbouncer_target(Local(), {}, str(tmp_path / "none.ini")) is None
