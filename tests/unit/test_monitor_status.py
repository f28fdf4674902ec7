"""`fab monitor.status`: munin-limits' state file as Debian's real munin-limits 2.0.73 writes it
(run here by test_munin_limits's master, paging the stand-in through the real pager), read by
the real remote program on a recorded monitoring host, parsed into one row per host, alert and
field with state, value, since, what the pager did, and the runbook."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import RECORDED, write_pager_config
from test_munin_limits import Master, feed

from fetchfleet.inventory import load_fleet
from fetchfleet.monitoring import alerts as A
from fetchfleet.monitoring.pagercode import cli as pager_cli
from fetchfleet.pagerduty_standin import StandIn
from fetchfleet.remote import Local, RemoteError, Result, run_program

STATUS = RECORDED / "supervisor" / "status-mixed-rc3.txt"
QUEUES_DOWN = "transfers\t3\t0\t0\nmedia\t0\t0\t1\nindex\t0\t0\t1\n"
QUEUES_UP = "transfers\t0\t0\t1\nmedia\t0\t0\t1\nindex\t0\t0\t1\n"


class MonitoringHost:
    """A converged monitoring host whose munin.conf and pager are the test master's."""

    name = "ops1"

    def __init__(self, master: Master, pager_config: Path) -> None:
        self.master, self.pager_config = master, pager_config
        self.unreachable = False

    def run(self, command: str, stdin=None, check: bool = True, timeout: float = 600) -> Result:
        if self.unreachable:
            raise RemoteError("unreachable over ssh: timed out", self.name)
        if command == f"cat {pager_cli.DEFAULT_CONFIG}":
            command = f"cat {self.pager_config}"
        command = command.replace(A.MUNIN_CONF, str(self.master.conf))
        return Local().run(command, stdin, check, timeout)


@pytest.fixture
def ops(tmp_path: Path, standin: StandIn, tls) -> MonitoringHost:
    config = write_pager_config(tmp_path, standin, tls)
    (tmp_path / "master").mkdir()
    return MonitoringHost(Master(tmp_path / "master", config), config)


def limits_run(ops: MonitoringHost, tmp_path: Path, queues: str) -> None:
    feed(ops.master, tmp_path, STATUS, queues)
    ops.master.limits()


def by_key(rows: list[dict]) -> dict[tuple[str, str, str], dict]:
    return {(r["host"], r["alert"], r["field"]): r for r in rows}


def test_the_state_file_munin_limits_writes_is_parsed_field_by_field(
    ops: MonitoringHost, tmp_path: Path
) -> None:
    limits_run(ops, tmp_path, QUEUES_DOWN)
    fields = A.parse_limits((tmp_path / "master" / "db" / "limits").read_text())
    states = {(f.host, f.alert, f.field): (f.state, f.value) for f in fields}
    assert states[("web1", "fetchfleet_supervisor_programs", "cloudfetch_worker")] == (
        "critical", "0.00",
    )  # fmt: skip
    assert states[("web1", "fetchfleet_supervisor_programs", "cloudfetch_web")] == ("ok", "")
    assert states[("mq1", "fetchfleet_celery_consumers", "transfers")] == ("critical", "0.00")
    assert states[("mq1", "fetchfleet_celery_up", "up")] == ("ok", "")
    assert {f.group for f in fields} == {"lab"}
    assert [f.state for f in fields] == sorted((f.state for f in fields), key=A.STATES.index), (
        "problems first"
    )


def test_status_rows_say_state_value_since_paged_and_runbook(
    ops: MonitoringHost, tmp_path: Path, standin: StandIn
) -> None:
    limits_run(ops, tmp_path, QUEUES_DOWN)
    [master] = A.status(_fleet(tmp_path), lambda h: ops)
    rows = by_key(master.rows)
    worker = rows[("web1", "fetchfleet_supervisor_programs", "cloudfetch_worker")]
    assert (worker["state"], worker["value"], worker["paged"]) == (
        "CRITICAL",
        "0.00",
        "paged (critical)",
    )
    assert worker["since"].endswith("s ago)") and worker["since"][:4].isdigit()
    assert worker["runbook"] == "monitoring/runbooks/fetchfleet_supervisor_programs.md"
    assert (tmp_path / "master").exists() and Path(
        A.RUNBOOKS.parents[1], worker["runbook"]
    ).is_file()
    web = rows[("web1", "fetchfleet_supervisor_programs", "cloudfetch_web")]
    assert (web["state"], web["value"], web["paged"]) == ("OK", "", "")
    assert master.counts() == {"critical": 4, "warning": 0, "unknown": 0, "ok": len(rows) - 4}
    assert master.limits_age is not None and master.limits_age < A.STALE_SECONDS
    assert master.pager_waiting == 0 and master.problem == ""
    # The worker is back: the row says OK since the pager resolved it.
    limits_run(ops, tmp_path, QUEUES_UP)
    [master] = A.status(_fleet(tmp_path), lambda h: ops)
    consumers = by_key(master.rows)[("mq1", "fetchfleet_celery_consumers", "transfers")]
    assert consumers["state"] == "OK" and consumers["since"] and consumers["paged"] == ""


def test_held_and_silenced_alerts_say_by_what(ops: MonitoringHost, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    spec = {"id": "s-1", "hosts": ["web1", "mq1"], "alerts": ["fetchfleet_supervisor_*", "fetchfleet_celery_up"],
            "minutes": 30, "reason": "fab deploy of R2 on lab", "who": "alice@ctl"}  # fmt: skip
    run_program(Local(), "silences", str(spool / "silences.json"), "add", json.dumps(spec))
    limits_run(ops, tmp_path, QUEUES_DOWN)
    [master] = A.status(_fleet(tmp_path), lambda h: ops)
    rows = by_key(master.rows)
    held = rows[("web1", "fetchfleet_supervisor_programs", "cloudfetch_worker")]
    assert held["paged"] == "held: silenced by fab deploy of R2 on lab (alice@ctl)"
    quiet = rows[("mq1", "fetchfleet_celery_up", "up")]
    assert quiet["state"] == "OK" and quiet["paged"].startswith("silenced until ")
    assert rows[("mq1", "fetchfleet_celery_consumers", "transfers")]["paged"] == "paged (critical)"


def test_old_states_are_flagged_with_the_timer_to_look_at(
    ops: MonitoringHost, tmp_path: Path
) -> None:
    limits_run(ops, tmp_path, QUEUES_DOWN)
    old = time.time() - 3600
    os.utime(tmp_path / "master" / "db" / "limits", (old, old))
    [master] = A.status(_fleet(tmp_path), lambda h: ops)
    assert "munin-limits last ran 60m ago" in master.problem
    assert "fetchfleet-munin-update.timer on ops1" in master.problem and master.rows


def test_a_master_that_never_ran_munin_limits_says_so(ops: MonitoringHost, tmp_path: Path) -> None:
    [master] = A.status(_fleet(tmp_path), lambda h: ops)
    assert master.rows == [] and "munin-limits has not run yet" in master.problem
    assert "systemctl status fetchfleet-munin-update.timer" in master.problem


def test_an_unreachable_master_is_named(ops: MonitoringHost, tmp_path: Path) -> None:
    ops.unreachable = True
    [master] = A.status(_fleet(tmp_path), lambda h: ops)
    assert master.host == "ops1" and "unreachable" in master.problem


def test_no_monitoring_host_is_an_error(tmp_path: Path) -> None:
    inv = tmp_path / "bare"
    inv.mkdir()
    (inv / "hosts.yml").write_text("all:\n  hosts:\n    web1: {ansible_host: 10.9.0.21}\n")
    with pytest.raises(A.MonitoringError, match="no monitoring host: nothing watches it"):
        A.status(load_fleet(str(inv)), lambda h: None)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Value is 412.00. Critical range (:300) exceeded", "412.00"),
        ("Value is -1.50. Warning range (0:) exceeded", "-1.50"),
        ("45.50 (not in :30): lag of db2", "45.50"),
        ("Value is unknown.", "unknown"),
        ("unknown: the plugin said why", "unknown"),
        ("OK", ""),
    ],
)
def test_values_from_each_way_munin_limits_words_a_state(text: str, value: str) -> None:
    """The four texts of Munin::Master::LimitsOld (with and without the plugin's extinfo)."""
    assert A.FieldState("lab", "h", "a", "f", "critical", text).value == value


def test_escaped_hashes_and_odd_lines_in_the_state_file() -> None:
    text = (
        "version 2.0.73\n"
        "lab;db1;fetchfleet_pgbouncer_waiting;cloudfetch_cloudfetch;state warning\n"
        "lab;db1;fetchfleet_pgbouncer_waiting;cloudfetch_cloudfetch;warning 7.00 (not in :5): pool \\#1\n"
        "lab;db1;x;state\n"
    )
    [f] = A.parse_limits(text)
    assert (f.host, f.alert, f.field, f.state, f.value) == (
        "db1", "fetchfleet_pgbouncer_waiting", "cloudfetch_cloudfetch", "warning", "7.00",
    )  # fmt: skip
    assert f.text.endswith("pool #1")


def _fleet(tmp_path: Path):  # type: ignore[no-untyped-def]
    inv = tmp_path / "inv"
    if not inv.exists():
        inv.mkdir()
        (inv / "hosts.yml").write_text(
            "all:\n  children:\n    monitoring:\n      hosts:\n        ops1: {ansible_host: 10.9.0.81}\n"
        )
    return load_fleet(str(inv))


def test_fab_reads_the_paths_roles_munin_writes() -> None:
    """The monitoring host's files fab reads are where roles/munin puts them (never a copy that
    could drift: a changed role path fails here)."""
    import yaml

    from fetchfleet.inventory import REPO
    from fetchfleet.monitoring import paging

    role = REPO / "roles" / "munin"
    internals = yaml.safe_load((role / "vars" / "main.yml").read_text())
    assert internals["__munin_pager_config"] == str(pager_cli.DEFAULT_CONFIG)
    tasks = {
        t["name"]: t
        for f in ("master_install.yml", "master_pager.yml")
        for t in yaml.safe_load((role / "tasks" / f).read_text())
    }
    assert (
        tasks["Write munin.conf (every inventory host; the pager as the contact)"][
            "ansible.builtin.template"
        ]["dest"]
        == A.MUNIN_CONF
    )
    assert (
        tasks["Install the pager's command"]["ansible.builtin.template"]["dest"]
        == paging.PAGER_COMMAND
    )


def test_an_event_the_pager_could_not_send_yet_says_so(
    ops: MonitoringHost, tmp_path: Path, tls
) -> None:
    with StandIn(tls) as gone:
        url = gone.url
    config = json.loads(ops.pager_config.read_text())
    ops.pager_config.write_text(json.dumps({**config, "events_url": url}))
    limits_run(ops, tmp_path, QUEUES_DOWN)
    [master] = A.status(_fleet(tmp_path), lambda h: ops)
    rows = by_key(master.rows)
    worker = rows[("web1", "fetchfleet_supervisor_programs", "cloudfetch_worker")]
    assert worker["paged"] == "paged (critical), NOT SENT YET (spooled on the master)"
    web = rows[("web1", "fetchfleet_supervisor_programs", "cloudfetch_web")]
    assert web["paged"] == "resolved, NOT SENT YET (spooled on the master)"
    assert master.pager_waiting == len([r for r in master.rows if "NOT SENT" in r["paged"]])
