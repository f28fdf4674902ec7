"""`fab monitor.*`, silences and the runbooks' one-host commands on the lab, with the PagerDuty
stand-in on the lab machine (10.77.0.1:8443, the lab's own CA) and playbooks/monitoring.yml
converged by the session's site.yml.

What only the lab can show: the routing key resolved from the lab's secrets and accepted by the
stand-in both ways pages leave (this machine, ops1's pager); munin-limits' real state file read
over SSH for every host; a rolling restart that pages nothing it was expected to cause; a fault
held by a silence, paged marked "silenced by" once the silence is lifted, and resolved by the
runbook's command; prune, and the allowed service restarts on real systemd.

    FETCHFLEET_LAB_KEEP=1 FETCHFLEET_SKIP_CONVERGE=1 pytest tests/lab/test_monitor_ops.py
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fetchfleet import deploy as D
from fetchfleet import hostops, remote
from fetchfleet.errors import FleetError
from fetchfleet.inventory import REPO, load_fleet
from fetchfleet.monitoring import alerts, paging
from fetchfleet.monitoring import silence as S
from fetchfleet.pagerduty_standin import StandIn, ensure_ca

FLEET = load_fleet("lab")
FAB = Path(sys.executable).parent / "fab"
CA_DIR = Path("/var/lib/fetchfleet/lab/pagerduty")
# Two Munin runs (one a minute) and the timer's flush: a fault pages, or a repair resolves, within.
CYCLE = 150.0
CONSUMERS = "munin/mq1/fetchfleet_celery_consumers/transfers"


def fab(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([str(FAB), *args], cwd=REPO, capture_output=True, text=True, timeout=900)
    print(done.stdout, done.stderr)
    return done


@pytest.fixture(scope="module")
def standin(lab, converged):
    tls = ensure_ca(CA_DIR, [FLEET.group_vars["lab_gateway"]])
    with StandIn(tls, host=FLEET.group_vars["lab_gateway"], port=8443) as server:
        # A silence an earlier test file left (a deploy killed on purpose keeps its own until it
        # expires, as it should) would hold the faults these tests cause: lifted now, no grace.
        for left in S.active(FLEET):
            if left["id"] != "?":
                try:
                    S.lift_by_id(FLEET, left["id"], grace=0)
                except FleetError as err:
                    print(f"silence {left['id']}: {err}")
        # What the pager spooled while no stand-in listened (the app's alerts from before the
        # first deploy, the faults of earlier test files) goes out now, not during a test that
        # counts its own events.
        for master in FLEET.group("monitoring"):
            flushed = remote.connect(master).run(
                "fetchfleet-pager flush --now --wait 60", check=False, timeout=120
            )
            print(f"{master.name}: {flushed.stdout}{flushed.stderr}")
        yield server


@pytest.fixture(scope="module")
def released(standin) -> str:
    """A release on every app host (restarts need one); deployed when the lab has none."""
    app = FLEET.group("web") + FLEET.group("workers")
    current = {D.Hosts().state(h)["current"] for h in app}
    if None in current or len(current) != 1:
        return D.deploy("lab", message="test_monitor_ops: a release to restart", out=print).release
    return current.pop()


def triggers(standin: StandIn, key: str) -> list[dict]:
    return [e for e in standin.events if e["dedup_key"] == key and e["event_action"] == "trigger"]


def wait_for(standin: StandIn, key: str, action: str, timeout: float) -> dict:
    return standin.wait_for(
        lambda e: e["dedup_key"] == key and e["event_action"] == action, timeout
    )


def open_in_pager(keys: list[str], timeout: float) -> dict[str, dict]:
    """The keys whose last decision in the pager's state (on the monitoring host) is still an
    open trigger or a held one, polled until there are none or `timeout` seconds pass."""
    [master] = FLEET.group("monitoring")
    runner = remote.connect(master)
    path = f"{S.pager_config(runner).spool_dir}/state.json"
    deadline = time.monotonic() + timeout
    while True:
        state = json.loads(runner.run(f"cat {path}", check=False).stdout or "{}")
        found = {
            k: {a: v for a, v in state[k].items() if a != "event"}
            for k in keys
            if state.get(k, {}).get("action") in ("trigger", "held")
        }
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(10)


def worker_row(host: str, done, timeout: float) -> dict:  # type: ignore[no-untyped-def]
    """monitor.status's row for the worker program's field on `host`, polled until `done(row)`
    or `timeout` seconds (the last row read is returned either way, for the assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        [master] = alerts.status(FLEET)
        rows = [r for r in master.rows if (r["host"], r["field"]) == (host, "cloudfetch_worker")]
        if (rows and done(rows[0])) or time.monotonic() > deadline:
            assert rows, f"no cloudfetch_worker row for {host}: {master.problem}"
            return rows[0]
        time.sleep(10)


def test_test_page_goes_out_both_ways_with_the_labs_routing_key(standin: StandIn) -> None:
    standin.reset()
    done = fab("monitor.test-page")
    assert done.returncode == 0, done.stderr
    keys = {e["dedup_key"] for e in standin.events}
    assert len(keys) == 2 and all(k.startswith("fetchfleet-test/") for k in keys)
    assert [e["event_action"] for e in standin.events].count("resolve") == 2
    secret = (
        (Path("/var/lib/fetchfleet/lab/secrets") / "pagerduty_routing_key").read_text().split()[0]
    )
    assert {e["routing_key"] for e in standin.events} == {secret}


def test_jenkins_pages_and_resolves_through_monitor_page(standin: StandIn) -> None:
    standin.reset()
    key = "jenkins-lab-test"
    assert fab("monitor.page", "--action", "trigger", "--severity", "warning", "--source",
               "jenkins", "--dedup-key", key, "--summary", "lab: a job failed").returncode == 0  # fmt: skip
    assert fab("monitor.page", "--action", "resolve", "--dedup-key", key).returncode == 0
    assert [(e["event_action"], e["dedup_key"]) for e in standin.events] == [
        ("trigger", key), ("resolve", key),
    ]  # fmt: skip


def test_status_reads_every_hosts_alerts_from_the_master(standin: StandIn) -> None:
    # munin-limits has run since the converge, and a munin-update of every node has been read;
    # on a loaded lab machine one Munin run can take longer than its minute: up to two cycles.
    everyone = {h.name for h in FLEET.hosts}
    deadline = time.monotonic() + 2 * CYCLE
    while True:
        [master] = alerts.status(FLEET)
        df = {r["host"] for r in master.rows if r["alert"] == "df"}
        fresh = master.limits_age is not None and master.limits_age < 120
        if (master.problem == "" and fresh and df == everyone) or time.monotonic() > deadline:
            break
        time.sleep(15)
    assert master.problem == "", master.problem
    assert fresh, f"munin-limits last ran {master.limits_age}s ago"
    assert df == everyone, f"no df rows from {sorted(everyone - df)}"
    assert all(r["runbook"] != "NONE" for r in master.rows)
    print(f"FIGURE monitor.status: {len(master.rows)} fields, {master.counts()}")
    done = fab("monitor.status", "--problems")
    assert done.returncode == 0 and "silences: 0 active" in done.stdout


def test_a_rolling_restart_pages_nothing_it_causes(standin: StandIn, released: str) -> None:
    standin.reset()
    report = D.restart("lab", message="test_monitor_ops: silenced restart", out=print)
    assert report.result == "ok"
    time.sleep(S.LIFT_GRACE_SECONDS + 60)  # the grace, and one more Munin run
    expected = tuple(p.rstrip("*") for p in S.ROLLOUT_ALERTS)
    paged = [
        e["dedup_key"]
        for e in standin.events
        if e["event_action"] == "trigger" and e["dedup_key"].split("/")[2].startswith(expected)
    ]
    assert paged == [], f"the restart paged what it was expected to cause: {paged}"
    lifted = [r for r in S.active(FLEET) if "fab restart" in r["reason"]]
    assert lifted == [], "the restart's silence is over"


def test_a_silenced_fault_pages_marked_once_lifted_and_the_runbook_resolves_it(
    standin: StandIn, released: str
) -> None:
    standin.reset()
    worker = FLEET.group("workers")[0]
    key = f"munin/{worker.name}/fetchfleet_supervisor_programs/cloudfetch_worker"
    # A trigger still open in the pager's state would deduplicate this fault's own page.
    still_open = open_in_pager([key, CONSUMERS], 2 * CYCLE)
    assert not still_open, f"the pager still has an earlier fault open: {still_open}"
    held = S.silence(FLEET, [worker], ["fetchfleet_supervisor_programs"], 30, "lab test: held")
    t0 = time.monotonic()
    remote.connect(worker).run("supervisorctl stop cloudfetch-worker")
    # Not silenced: the broker's queue has no consumer and pages.
    consumers = wait_for(standin, CONSUMERS, "trigger", CYCLE)
    print(f"FIGURE fault -> trigger (consumers): {time.monotonic() - t0:.0f}s")
    # The worker's own field goes critical at the same Munin run or the next: held, not paged.
    row = worker_row(worker.name, lambda r: r["paged"].startswith("held"), CYCLE)
    assert triggers(standin, key) == [], "the silenced alert did not page"
    assert row["state"] == "CRITICAL", row
    assert row["paged"].startswith("held: silenced by lab test: held"), row
    assert consumers["payload"]["severity"] == "critical"
    S.lift(held)
    paged = wait_for(standin, key, "trigger", S.LIFT_GRACE_SECONDS + CYCLE)
    assert paged["payload"]["custom_details"]["silenced"].startswith("silenced by lab test: held")
    t1 = time.monotonic()
    assert fab("app.restart-program", worker.name, "cloudfetch_worker").returncode == 0
    wait_for(standin, key, "resolve", CYCLE)
    wait_for(standin, CONSUMERS, "resolve", CYCLE)
    print(f"FIGURE repair (app.restart-program) -> resolve: {time.monotonic() - t1:.0f}s")


def test_host_prune_keeps_current_previous_and_the_newest(standin: StandIn, released: str) -> None:
    web = FLEET.group("web")[0]
    before = D.Hosts().state(web)
    doomed = D.select_removals(before["installed"], before["current"], 2)
    dry = hostops.prune("lab", web.name, keep=2, dry_run=True, out=print)
    assert [r["name"] for r in dry.removed if r["what"] == "release"] == doomed
    assert D.Hosts().state(web)["installed"] == before["installed"], "a dry run removes nothing"
    hostops.prune("lab", web.name, keep=2, out=print)
    after = D.Hosts().state(web)
    assert after["installed"] == [r for r in before["installed"] if r not in doomed]
    assert after["current"] == before["current"]


@pytest.mark.parametrize(
    ("group", "service"),
    [("rabbitmq", "rabbitmq-server"), ("loadbalancers", "nginx"), ("workers", "transmission-daemon"),
     ("db_primary", "pgbouncer"), ("web", "munin-node")],
)  # fmt: skip
def test_allowed_services_restart_and_stay_up(
    standin: StandIn, released: str, group: str, service: str
) -> None:
    host = FLEET.group(group)[0]
    done = hostops.restart_service("lab", host.name, service, "test_monitor_ops", out=print)
    assert done["state"] == "active"
    state = remote.connect(host).run(f"systemctl is-active {service}", check=False).stdout.strip()
    assert state == "active"
    if service in ("rabbitmq-server", "pgbouncer"):
        time.sleep(10)  # the app reconnects
        assert all("ok" in r["health"] for r in D.status("lab") if r["health"] != "-")


def test_a_page_the_standin_refuses_with_500_is_spooled_then_flushed(
    standin: StandIn, tmp_path: Path
) -> None:
    standin.reset()
    standin.plan(500, 500)
    paged = paging.page(
        "lab", paging.build_event("resolve", dedup_key="lab-spool-test"), io.StringIO()
    )
    assert paged.status == "spooled"
    assert paging.flush("lab", io.StringIO()).sent == 1
    assert [e["dedup_key"] for e in standin.events] == ["lab-spool-test"]
