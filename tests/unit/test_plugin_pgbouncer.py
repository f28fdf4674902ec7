"""fetchfleet_pgbouncer against `SHOW POOLS` recorded from a real pgbouncer 1.18.0 (Debian 12's)
in front of PostgreSQL 15, through psql -A -F '\\t' -P footer=off as the plugin runs it: a pool
of 2 with 5 clients each running pg_sleep(6) (2 active, 3 waiting), then the same pool idle.
Lab test for the lead: on db1 `munin-run fetchfleet_pgbouncer` reports the cloudfetch pool, and
stopping pgbouncer (`systemctl stop pgbouncer`) reports fetchfleet_pgbouncer_up 0."""

from __future__ import annotations

from pathlib import Path

import fetchfleet_pgbouncer as plugin
from conftest import RECORDED
from munin_run import replay, run

POOLS = RECORDED / "pgbouncer"


def test_waiting_clients_and_their_wait() -> None:
    pools = plugin.parse_pools((POOLS / "show-pools-waiting.txt").read_text())
    assert list(pools) == ["cloudfetch/postgres"]  # the admin console's own pool is left out
    pool = pools["cloudfetch/postgres"]
    assert (pool.cl_active, pool.cl_waiting, pool.sv_active, pool.sv_idle) == (2, 3, 2, 0)
    assert 3.0 < pool.maxwait_seconds < 4.0


def test_plugin_output_for_a_busy_and_an_idle_pool(tmp_path: Path) -> None:
    psql = replay(tmp_path, "psql", POOLS / "show-pools-waiting.txt")
    busy = run(plugin.Pgbouncer, env={"psql": psql})
    assert busy.values["fetchfleet_pgbouncer_waiting"] == {"cloudfetch_postgres": "3"}
    assert busy.values["fetchfleet_pgbouncer_connections"] == {
        "cloudfetch_postgres_cl": "2",
        "cloudfetch_postgres_sv": "2",
        "cloudfetch_postgres_idle": "0",
    }
    limits = run(plugin.Pgbouncer, "config", env={"psql": psql}).thresholded()
    assert limits["fetchfleet_pgbouncer_waiting"]["cloudfetch_postgres"] == {
        "warning": "5",
        "critical": "20",
    }
    idle = run(
        plugin.Pgbouncer, env={"psql": replay(tmp_path, "psql2", POOLS / "show-pools-idle.txt")}
    )
    assert idle.values["fetchfleet_pgbouncer_waiting"] == {"cloudfetch_postgres": "0"}
    assert idle.values["fetchfleet_pgbouncer_maxwait"] == {"cloudfetch_postgres": "0"}


def test_pgbouncer_down(tmp_path: Path) -> None:
    error = (
        'psql: error: connection to server on socket "/var/run/postgresql/.s.PGSQL.6432" failed: '
        "No such file or directory\n"
    )
    fetch = run(plugin.Pgbouncer, env={"psql": replay(tmp_path, "psql", "", code=2, stderr=error)})
    assert fetch.code == 0 and fetch.values["fetchfleet_pgbouncer_up"] == {"up": "0"}
    assert "No such file or directory" in fetch.stderr
