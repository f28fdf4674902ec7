"""fetchfleet_postgres against a real PostgreSQL 15 primary and streaming replica, through psql
as on the database hosts. Lab test for the lead: on db1 `munin-run fetchfleet_postgres` reports
db2 streaming with the lag fetchfleet.postgres.replication_lag reads; `systemctl stop
postgresql@15-main` on db2 turns fetchfleet_postgres_streaming.db2 to 0 within a minute."""

from __future__ import annotations

import shlex

import fetchfleet_postgres as plugin
from conftest import Pair, Server
from munin_run import run


def settings(server: Server, **extra: str) -> dict[str, str]:
    return {"psql": shlex.join(server.psql("-U", "postgres", "-d", "postgres")), **extra}


def test_the_primary_reports_its_replica_streaming(pg_pair: Pair) -> None:
    pg_pair.wait_streaming()
    fetch = run(plugin.Postgres, env=settings(pg_pair.primary))
    assert fetch.code == 0, fetch.stderr
    assert fetch.values["fetchfleet_postgres_up"] == {"up": "1"}
    assert fetch.values["fetchfleet_postgres_streaming"] == {"replica1": "1"}
    assert int(fetch.values["fetchfleet_postgres_lag_bytes"]["replica1"]) >= 0
    assert float(fetch.values["fetchfleet_postgres_lag_seconds"]["replica1"]) >= 0
    assert "fetchfleet_postgres_receiver" not in fetch.values
    use = float(fetch.values["fetchfleet_postgres_connection_use"]["used_percent"])
    assert 0 < use < 100  # the plugin's own psql is a client backend
    assert int(fetch.values["fetchfleet_postgres_connections"]["active"]) >= 1
    limits = run(plugin.Postgres, "config", env=settings(pg_pair.primary)).thresholded()
    assert limits["fetchfleet_postgres_streaming"] == {"replica1": {"critical": "1:"}}
    assert limits["fetchfleet_postgres_connection_use"]["used_percent"] == {
        "warning": "80",
        "critical": "95",
    }


def test_the_replica_reports_its_walreceiver(pg_pair: Pair) -> None:
    pg_pair.wait_streaming()
    fetch = run(plugin.Postgres, env=settings(pg_pair.replica))
    assert fetch.code == 0, fetch.stderr
    assert fetch.values["fetchfleet_postgres_receiver"] == {"streaming": "1"}
    assert float(fetch.values["fetchfleet_postgres_replay_delay"]["delay"]) >= 0
    assert "fetchfleet_postgres_streaming" not in fetch.values


def test_an_expected_replica_without_slot_is_reported_not_streaming(pg_pair: Pair) -> None:
    fetch = run(plugin.Postgres, env=settings(pg_pair.primary, replicas="replica1 db3"))
    assert fetch.values["fetchfleet_postgres_streaming"] == {"db3": "0", "replica1": "1"}
    assert fetch.values["fetchfleet_postgres_lag_bytes"]["db3"] == "U"


def test_a_stopped_replica_is_not_streaming_and_lags(pg_pair: Pair) -> None:
    pg_pair.replica.stop()
    try:
        pg_pair.primary.sql("CREATE TABLE IF NOT EXISTS plugin_probe (n int)")
        pg_pair.primary.sql("INSERT INTO plugin_probe SELECT generate_series(1, 1000)")
        fetch = run(plugin.Postgres, env=settings(pg_pair.primary))
        down = run(plugin.Postgres, env=settings(pg_pair.replica, role="replica"))
    finally:
        pg_pair.replica.start()
    assert fetch.values["fetchfleet_postgres_streaming"] == {"replica1": "0"}
    assert int(fetch.values["fetchfleet_postgres_lag_bytes"]["replica1"]) > 0
    assert fetch.values["fetchfleet_postgres_lag_seconds"] == {"replica1": "U"}
    assert down.code == 0 and down.values["fetchfleet_postgres_up"] == {"up": "0"}
    assert down.values["fetchfleet_postgres_receiver"] == {"streaming": "U"}
    assert "Is the server running" in down.stderr
    pg_pair.wait_streaming()
