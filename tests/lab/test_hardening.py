"""The security baseline (roles/hardening), the central logs (roles/logs) and the security report
on the converged lab: each setting observed on the hosts (effective sshd settings, live kernel
parameters, modprobe's answer, what a container refuses and why), a password login refused and
logged on the host and on the log server, log lines from web1 on ops1 within 10 s and through
`fab logs`, lines written while ops1 is down arriving after it is back, and the port scan from the
seeder finding only what the firewall data allows it. Shares the session's converge."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import paramiko
import pytest

from fetchfleet import lab as L
from fetchfleet.errors import FleetError
from fetchfleet.inventory import REPO, load_fleet
from fetchfleet.logs import Query, read_logs
from fetchfleet.programs.hardening_state import matches, sshd_settings
from fetchfleet.security import build_report

HOSTS = [h.name for h in load_fleet("lab").hosts]
FAB = str(Path(sys.executable).parent / "fab")


def record(host, name: str) -> dict:
    return json.loads(host(name).check_output("cat /etc/fetchfleet/hardening.json"))


def controls(host, name: str, kind: str) -> list[dict]:
    return [c for c in record(host, name)["controls"] if c["kind"] == kind]


@pytest.mark.parametrize("name", HOSTS)
def test_sshd_runs_with_the_recorded_settings(converged, host, name):
    effective = sshd_settings(host(name).check_output("sshd -T"))
    expected = controls(host, name, "sshd")
    assert len(expected) >= 20
    wrong = {
        c["key"]: effective.get(c["key"])
        for c in expected
        if not matches("sshd", c["expect"], effective.get(c["key"], []))
    }
    assert not wrong, wrong
    assert effective["permitrootlogin"] == ["without-password"]  # the lab's root key login
    assert effective["passwordauthentication"] == ["no"] and effective["disableforwarding"] == [
        "yes"
    ]


@pytest.mark.parametrize("name", HOSTS)
def test_network_parameters_are_live_and_the_kernels_are_read_only_here(converged, host, name):
    h = host(name)
    for control in controls(host, name, "sysctl"):
        path = "/proc/sys/" + control["key"].replace(".", "/")
        if "skipped" in control:
            # The recorded reason holds: a container cannot write it.
            assert not control["key"].startswith("net."), control
            assert h.run(f"test -w {path}").rc != 0, (
                f"{control['key']} is writable: stop skipping it"
            )
        else:
            assert h.check_output(f"cat {path}") == control["expect"], control["key"]


def test_unused_protocols_and_filesystems_never_load(converged, host):
    h = host("db1")
    for module in ("dccp", "sctp", "rds", "tipc", "cramfs", "usb-storage"):
        assert h.check_output(f"modprobe -n -v {module}").strip() == "install /bin/false", module


def test_auditd_and_accounting_are_skipped_in_containers_for_the_recorded_reason(converged, host):
    h = host("web1")
    status = h.run("auditctl -s")
    # The kernel refuses it one way or the other, by its version: EPERM on the netlink socket's
    # requests, or no audit socket for a PID namespace at all.
    refusals = ("Operation not permitted", "Cannot open netlink audit socket")
    assert status.rc != 0 and any(r in status.stderr for r in refusals), status.stderr
    accton = h.run("accton /var/tmp/pacct-probe")
    assert accton.rc != 0 and "Operation not permitted" in accton.stderr, accton.stderr
    for unit in ("auditd", "acct"):
        assert h.check_output(f"systemctl show -p ConditionResult --value {unit}") == "no", unit
    assert h.file("/etc/audit/rules.d/50-fetchfleet.rules").contains("-k identity")
    skipped = {c["key"]: c["skipped"] for c in controls(host, "web1", "unit") if "skipped" in c}
    assert (
        "audit netlink" in skipped["auditd.service"] and "CAP_SYS_PACCT" in skipped["acct.service"]
    )


def test_no_core_dumps_and_people_get_umask_027(converged, host):
    h = host("worker1")
    assert h.check_output("systemctl show -p DefaultLimitCORE --value") == "0"
    assert h.check_output("ulimit -Hc") == "0"  # this ssh session, through pam_limits
    assert h.check_output("bash -lc umask") == "0027"  # a login shell
    assert h.check_output("umask") == "0022"  # the automation's sessions stay readable
    lines = h.check_output(
        "grep -E '^(UMASK|ENCRYPT_METHOD|YESCRYPT_COST_FACTOR)\\s' /etc/login.defs"
    )
    defs = dict(line.split() for line in lines.splitlines())
    assert defs == {"UMASK": "027", "ENCRYPT_METHOD": "YESCRYPT", "YESCRYPT_COST_FACTOR": "8"}
    assert h.file("/etc/shadow").mode == 0o640 and h.file("/etc/ssh/sshd_config").mode == 0o600
    assert "Authorised access only" in h.file("/etc/issue.net").content_string


def test_a_password_login_is_refused_and_logged_here_and_on_the_log_server(lab, converged, host):
    since = host("web1").check_output("date +%s")
    transport = paramiko.Transport((lab.host("web1").address, 22))
    try:
        transport.start_client(timeout=10)
        with pytest.raises(paramiko.BadAuthenticationType) as refused:
            transport.auth_password("ops", f"guess-{uuid.uuid4().hex[:8]}")
        assert refused.value.allowed_types == ["publickey"]
    finally:
        transport.close()
    needle = "authenticating user ops 10.77.0.1"
    local = host("web1").check_output(f"journalctl -u ssh --since @{since} --no-pager -o cat")
    deadline = time.monotonic() + 10
    while needle not in local and time.monotonic() < deadline:
        time.sleep(0.5)
        local = host("web1").check_output(f"journalctl -u ssh --since @{since} --no-pager -o cat")
    assert needle in local, local
    assert _arrives(Query(("web1",), unit="ssh", grep=needle, lines=0), needle, 15), (
        "not on the log server"
    )


def _arrives(query: Query, marker: str, seconds: float) -> float | None:
    """Seconds until `marker` is in what the log server has for the query (None: never)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        try:
            if marker in read_logs(load_fleet("lab"), query):
                return time.monotonic() - t0
        except FleetError:  # no journal from the host yet, or ops1 still booting
            pass
        time.sleep(0.5)
    return None


def test_a_line_from_web1_is_on_ops1_within_10s_and_through_fab_logs(lab, converged):
    marker = f"fetchfleet-logs-{uuid.uuid4().hex}"
    L.run_on(lab, "web1", f"logger -t fetchfleet-test {marker}")
    took = _arrives(Query(("web1",), grep=marker, lines=0), marker, 10)
    assert took is not None, f"{marker} did not reach ops1 within 10 s"
    print(f"\nFIGURE log line web1 -> ops1: {took:.1f}s")
    out = subprocess.run(
        [FAB, "logs", "web1", "--grep", marker, "--since", "-10min"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert out.returncode == 0 and marker in out.stdout and " web1 fetchfleet-test" in out.stdout, (
        out.stdout + out.stderr
    )
    bad = subprocess.run(
        [FAB, "logs", "web1", "--since", "last tuesday-ish"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert bad.returncode == 1 and "--since 'last tuesday-ish'" in bad.stderr


def test_lines_written_while_the_log_server_is_down_arrive_after_it_is_back(lab, converged):
    markers = [f"fetchfleet-while-down-{i}-{uuid.uuid4().hex[:12]}" for i in range(3)]
    L.stop_host(lab, "ops1")
    try:
        for marker in markers:
            L.run_on(lab, "web1", f"logger -t fetchfleet-test {marker}")
        # web1 keeps trying (Restart=always) and has not given up by the time ops1 returns.
        time.sleep(15)
        state = L.run_on(
            lab, "web1", "systemctl show -p ActiveState,SubState --value systemd-journal-upload"
        ).stdout
        assert "failed" not in state, state
    finally:
        L.up(lab, ["ops1"])
    t0 = time.monotonic()
    for marker in markers:
        assert _arrives(Query(("web1",), grep=marker, lines=0), marker, 90) is not None, marker
    print(
        f"\nFIGURE lines written while ops1 was down, on ops1 {time.monotonic() - t0:.1f}s after it was up"
    )
    # Each exactly once: journal-upload resumed after its cursor, it did not send the journal again.
    text = read_logs(load_fleet("lab"), Query(("web1",), grep="fetchfleet-while-down", lines=0))
    for marker in markers:
        assert text.count(marker) == 1, text


@pytest.fixture(scope="module")
def security_report(lab, converged):
    t0 = time.monotonic()
    report = build_report(load_fleet("lab"))
    print(
        f"\nFIGURE fab security.report (rules, controls on {len(report.controls)} hosts, scan): {time.monotonic() - t0:.1f}s"
    )
    return report


def test_the_report_finds_no_drift_and_knows_why_each_control_is_skipped(security_report):
    assert not [c for c in security_report.controls if c.error], [
        c.error for c in security_report.controls
    ]
    assert security_report.drift == []
    reasons = {
        r["reason"] for c in security_report.controls for r in c.results if r["status"] == "skipped"
    }
    assert any("read-only" in r for r in reasons) and any("audit netlink" in r for r in reasons)


def test_the_scan_from_the_seeder_finds_only_what_the_firewall_data_allows(security_report):
    assert security_report.scanner == "seed1"
    assert security_report.unexpected == {}, security_report.unexpected
    assert 80 in security_report.found["lb1"]
    assert 80 in security_report.allowed["lb1"] and 22 not in security_report.allowed["lb1"]
    # Nothing the seeder may not reach answers it: ssh, the databases, the broker, the app hosts.
    assert not security_report.found["db1"] and not security_report.found["web1"]
