"""`fab db.status`: the data tier as the databases themselves see it, one row per database host.

Each host of `db_primary` and `db_replicas` is asked through its own `psql` (as `postgres`, over
SSH; any `Runner` works, so the tests ask local servers the same way): is it in recovery, its
timeline and WAL position, whom it streams from. The primary's view of each replica (state,
synchronous state, slot, replay lag in bytes and seconds) is `fetchfleet.replication`'s, the
one lag definition the Munin plugin uses too. pgbouncer's target is read from its configuration
where it runs. What disagrees with the inventory (a primary in recovery, two primaries, a replica
that does not stream) is listed under the table as a problem.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fetchfleet import remote
from fetchfleet.errors import FleetError
from fetchfleet.inventory import Fleet, Host
from fetchfleet.output import table
from fetchfleet.remote import Runner
from fetchfleet.replication import (
    QueryError,
    ReplicaLag,
    ReplicationError,
    psql_json_args,
    psql_rows,
    replication_lag,
)

PRIMARY_GROUP, REPLICA_GROUP = "db_primary", "db_replicas"
PGBOUNCER_INI = "/etc/pgbouncer/pgbouncer.ini"

# What a database host says of itself. A primary's timeline is that of the WAL it writes now (the
# checkpoint's lags behind a promotion until the next checkpoint); a replica's that of the WAL it
# receives.
_SELF = """
SELECT pg_is_in_recovery() AS in_recovery,
       (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
             ELSE pg_current_wal_lsn() END)::text AS lsn,
       CASE WHEN pg_is_in_recovery()
            THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver),
                          (SELECT timeline_id FROM pg_control_checkpoint()))
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
       END AS timeline,
       (SELECT sender_host FROM pg_stat_wal_receiver) AS upstream,
       current_setting('synchronous_standby_names') AS synchronous_standby_names
"""


class DbStatusError(FleetError):
    prefix = "db.status"


class RunnerPsql:
    """A `replication.Database` read by `psql` through a runner: a host over SSH, or this machine."""

    def __init__(
        self, runner: Runner, where: str, psql: str = "cd / && runuser -u postgres -- psql"
    ):
        self.runner, self.where, self.psql = runner, where, psql

    def rows(self, sql: str) -> list[dict[str, Any]]:
        command = f"{self.psql} {shlex.join(psql_json_args(sql))}"
        try:
            result = self.runner.run(command, check=False, timeout=30)
        except FleetError as err:
            raise QueryError(f"{self.where}: {err.what}") from err
        if result.returncode != 0:
            detail = " ".join(result.stderr.split()) or f"exit status {result.returncode}"
            raise QueryError(f"{self.where}: psql: {detail}")
        return psql_rows(self.where, result.stdout)


@dataclass(frozen=True)
class DbHost:
    """One database host: where the inventory puts it and how to ask it."""

    name: str
    address: str
    expected: str  # "primary" or "replica": the inventory's group
    db: Any  # a replication.Database
    runner: Runner | None = None  # for pgbouncer's configuration; None: not read


@dataclass(frozen=True)
class Row:
    host: str
    expected: str
    role: str  # primary, replica, or down (why: under the table)
    timeline: int | None = None
    lsn: str | None = None
    upstream: str | None = None
    state: str | None = None
    sync: str | None = None
    slot: str | None = None
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    pgbouncer: str | None = None

    def cells(self) -> dict[str, str]:
        def show(value: object) -> str:
            return "-" if value is None else str(value)

        seconds = None if self.lag_seconds is None else f"{self.lag_seconds:.3f}"
        return {
            "host": self.host,
            "inventory": self.expected,
            "role": self.role,
            "timeline": show(self.timeline),
            "lsn": show(self.lsn),
            "upstream": show(self.upstream),
            "state": show(self.state),
            "sync": show(self.sync),
            "slot": show(self.slot),
            "lag bytes": show(self.lag_bytes),
            "lag s": show(seconds),
            "pgbouncer": show(self.pgbouncer),
        }


@dataclass(frozen=True)
class Status:
    rows: list[Row]
    problems: list[str]


def db_hosts(fleet: Fleet, connect: Callable[[Host], Runner] = remote.connect) -> list[DbHost]:
    """The inventory's database hosts, primary first; DbStatusError when it names none."""
    primaries, replicas = fleet.group(PRIMARY_GROUP), fleet.group(REPLICA_GROUP)
    if not primaries:
        raise DbStatusError(f"inventory {fleet.name} has no host in group {PRIMARY_GROUP}")
    hosts = []
    for expected, group in (("primary", primaries), ("replica", replicas)):
        for host in group:
            runner = connect(host)
            db = RunnerPsql(runner, host.name)
            hosts.append(DbHost(host.name, host.address, expected, db, runner))
    return hosts


def pgbouncer_target(runner: Runner, names: dict[str, str], ini: str = PGBOUNCER_INI) -> str | None:
    """`host:port` pgbouncer sends its databases to (a fleet address by its host name), or None
    where no pgbouncer is configured."""
    path = shlex.quote(ini)
    command = (
        f"test -f {path} || exit 0; "
        f"sed -n 's/^[^;#[].*=.*host=\\([^ ]*\\).*port=\\([0-9]*\\).*/\\1:\\2/p' {path}"
    )
    targets = sorted(set(runner.run(command, check=False, timeout=30).stdout.split()))
    if not targets:
        return None
    return ",".join(_named(t, names) for t in targets)


def _named(target: str, names: dict[str, str]) -> str:
    address, _, port = target.rpartition(":")
    name = "self" if address in ("127.0.0.1", "localhost", "::1") else names.get(address, address)
    return f"{name}:{port}"


def status(hosts: list[DbHost], names: dict[str, str] | None = None) -> Status:
    """Ask every host (in parallel), then the primary about its replicas."""
    names = names or {h.address: h.name for h in hosts}

    def ask(host: DbHost) -> tuple[dict[str, Any] | None, str | None, str | None]:
        try:
            me = host.db.rows(_SELF)[0]
        except QueryError as err:
            return None, str(err), None
        pgbouncer = None
        if host.runner is not None:
            try:
                pgbouncer = pgbouncer_target(host.runner, names)
            except FleetError as err:
                pgbouncer = f"unknown ({err.what})"
        return me, None, pgbouncer

    answers = remote.parallel(ask, hosts)
    rows: list[Row] = []
    problems: list[str] = []
    primaries = [
        h for h, (me, _, _) in zip(hosts, answers, strict=True) if me and not me["in_recovery"]
    ]
    lags: dict[str, ReplicaLag] = {}
    if len(primaries) == 1:
        try:
            lags = {lag.name: lag for lag in replication_lag(primaries[0].db)}
        except (QueryError, ReplicationError) as err:
            problems.append(f"{primaries[0].name}: its replicas could not be read: {err}")
    elif len(primaries) > 1:
        problems.append(
            f"{len(primaries)} primaries ({', '.join(h.name for h in primaries)}): "
            "only one may take writes; fence all but one"
        )
    else:
        problems.append("no primary answers: the data tier takes no writes")
    for host, (me, error, pgbouncer) in zip(hosts, answers, strict=True):
        lag = lags.get(host.name)
        # The primary's view of this host's stream (also of a replica that is down: its slot).
        seen = {
            "state": lag.state if lag else None,
            "sync": lag.sync_state if lag else None,
            "slot": lag.slot_name if lag else None,
            "lag_bytes": lag.replay_lag_bytes if lag else None,
            "lag_seconds": lag.replay_lag_seconds if lag else None,
        }
        if me is None:
            role = "down"
            problems.append(f"{host.name}: does not answer ({error})")
        else:
            role = "replica" if me["in_recovery"] else "primary"
            if role != host.expected:
                problems.append(
                    f"{host.name} is a {role}, the inventory has it in "
                    f"{PRIMARY_GROUP if host.expected == 'primary' else REPLICA_GROUP}"
                )
        replica = len(primaries) == 1 and host is not primaries[0] and role != "primary"
        if replica and (lag is None or not lag.streaming):
            problems.append(
                f"{host.name}: not streaming from {primaries[0].name} "
                f"({lag.state if lag else 'unknown to the primary'})"
            )
        upstream = (me or {}).get("upstream")
        rows.append(
            Row(
                host.name,
                host.expected,
                role,
                timeline=(me or {}).get("timeline"),
                lsn=(me or {}).get("lsn"),
                upstream=names.get(upstream, upstream) if upstream else None,
                pgbouncer=pgbouncer,
                **seen,
            )
        )
    # A slot no one streams from keeps WAL all the same, until the primary's disk is full.
    known = {h.name for h in hosts}
    for name, lag in sorted(lags.items()):
        if name not in known and not lag.streaming:
            problems.append(
                f"{primaries[0].name} keeps WAL for {name!r} ({lag.state}, "
                f"{lag.slot_retained_bytes} bytes retained) and no one streams from it"
            )
    return Status(rows, problems)


def render(result: Status) -> str:
    lines = [table([row.cells() for row in result.rows])]
    if result.problems:
        lines += ["", "problems:", *(f"  - {p}" for p in result.problems)]
    else:
        lines += ["", "no problems: one primary, every replica streaming"]
    return "\n".join(lines)
