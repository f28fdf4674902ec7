"""The common role on every lab host: sshd, firewall, users, services, /etc/hosts."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from fetchfleet.inventory import load_fleet
from fetchfleet.lab import run_on, tcp_open
from fetchfleet.settings import setting

from badvars import assert_refused_before_any_change

FLEET = load_fleet("lab")
HOSTS = [h.name for h in FLEET.hosts]
# systemd's catalog: "Disk space used by the journal", logged by journald with its limits.
JOURNAL_USAGE = "ec387f577b844b8fa948f33cad9a75e6"
# A port no role declares; a listener is started on it and must be unreachable from elsewhere.
UNDECLARED_PORT = 18123


@pytest.mark.parametrize("name", HOSTS)
def test_sshd_allows_keys_only(converged, host, name):
    effective = dict(
        line.split(" ", 1)
        for line in host(name).check_output("sshd -T").splitlines()
        if " " in line
    )
    assert effective["passwordauthentication"] == "no"
    assert effective["kbdinteractiveauthentication"] == "no"
    assert effective["permitrootlogin"] == "without-password"  # sshd -T's prohibit-password
    assert effective["pubkeyauthentication"] == "yes"


def test_password_login_is_not_even_offered(lab, converged):
    target = lab.host("web1")
    argv = [
        "ssh",
        "-o", f"UserKnownHostsFile={lab.known_hosts}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "PubkeyAuthentication=no",
        "-o", "PreferredAuthentications=password,keyboard-interactive",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=5",
        f"ops@{target.address}",
        "true",
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode != 0
    assert "Permission denied (publickey)" in proc.stderr, proc.stderr


@pytest.mark.parametrize("name", HOSTS)
def test_baseline_services_run(converged, host, name):
    h = host(name)
    for unit in ("ssh", "nftables", "systemd-networkd", "systemd-journald"):
        # nftables is a oneshot that stays "active (exited)" once its ruleset is loaded.
        assert h.run(f"systemctl is-active {unit}").stdout.strip() == "active", unit
    assert h.service("systemd-timesyncd").is_enabled
    assert h.service("apt-daily-upgrade.timer").is_enabled


def test_timesyncd_declines_only_because_it_is_a_container(converged, host):
    h = host("db1")
    assert h.check_output("systemd-detect-virt --container") == "systemd-nspawn"
    condition = h.check_output("systemctl show -p ConditionResult --value systemd-timesyncd")
    assert condition == "no", "timesyncd should be skipped by its container condition, not failed"
    assert (
        "NTP=10.77.0.1" in h.file("/etc/systemd/timesyncd.conf.d/10-fetchfleet.conf").content_string
    )


@pytest.mark.parametrize("name", HOSTS)
def test_firewall_default_denies_inbound(converged, host, name):
    ruleset = host(name).check_output("nft list chain inet filter input")
    assert "policy drop" in ruleset
    assert "tcp dport 22 ip saddr 10.77.0.1 accept" in ruleset


def test_undeclared_port_is_closed_from_another_lab_host(lab, converged):
    target, other = "web2", "lb1"
    # A real listener for a bounded time, so "closed" means the firewall, not "nobody listens".
    run_on(
        lab,
        target,
        f"systemd-run --unit=probe-{UNDECLARED_PORT} --property=RuntimeMaxSec=120 "
        f"python3 -m http.server {UNDECLARED_PORT} --bind 0.0.0.0",
    )
    try:
        assert _wait(lambda: tcp_open(lab, target, target, UNDECLARED_PORT)), (
            "listener never came up"
        )
        assert not tcp_open(lab, other, target, UNDECLARED_PORT)
    finally:
        run_on(lab, target, f"systemctl stop probe-{UNDECLARED_PORT}", check=False)


def test_ssh_is_open_to_the_lab_machine_only(lab, converged):
    assert tcp_open(lab, "web1", "web1", 22)  # sshd listens
    assert not tcp_open(lab, "lb1", "web1", 22)  # another fleet host may not log in


def _wait(check, tries: int = 30) -> bool:
    for _ in range(tries):
        if check():
            return True
        time.sleep(0.5)
    return False


@pytest.mark.parametrize("name", HOSTS)
def test_admin_user_logs_in_with_key_and_sudo(lab, converged, name):
    address = lab.host(name).address
    argv = [
        "ssh", "-i", str(lab.ssh_key),
        "-o", f"UserKnownHostsFile={lab.known_hosts}", "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
        f"ops@{address}", "sudo -n id -u && id -nG",
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    uid, groups = proc.stdout.split("\n", 1)
    assert uid == "0"
    assert "sudo" in groups.split()


@pytest.mark.parametrize("name", HOSTS)
def test_fleet_names_resolve(lab, converged, host, name):
    h = host(name)
    for other in lab.hosts:
        assert h.check_output(f"getent hosts {other.name}").split()[0] == other.address


def test_only_security_updates_are_unattended(converged, host):
    dump = host("worker1").check_output("apt-config dump Unattended-Upgrade::Origins-Pattern")
    patterns = [
        line
        for line in dump.splitlines()
        if line.startswith("Unattended-Upgrade::Origins-Pattern::")
    ]
    assert patterns and all("security" in line.lower() for line in patterns), dump


def size_bytes(size: str) -> int:
    """journald's sizes ("500M"): powers of 1024."""
    match = re.fullmatch(r"(\d+)([KMGT]?)", size)
    assert match, f"not a journald size: {size!r}"
    return int(match[1]) * 1024 ** " KMGT".index(match[2] or " ")


def test_journal_is_limited(converged, host):
    """The limit journald enforces, as journald itself reports it: each time it opens the system
    journal it logs "System Journal (…) is 8.0M, max 500.0M, …" (catalog id JOURNAL_USAGE), the
    numbers as fields. Without the role's SystemMaxUse the max is 10% of the disk (~600M here);
    a journal that is not persistent has no System Journal at all, and no such limit."""
    name = "mq1"
    h = host(name)
    want = size_bytes(str(setting(FLEET.host(name), "common_journald_system_max_use")))
    since = h.check_output("date +%s")
    h.check_output("systemctl restart systemd-journald")  # it reports when it opens the journal
    query = (
        f"journalctl -o json --no-pager --since @{since} MESSAGE_ID={JOURNAL_USAGE} "
        "'JOURNAL_NAME=System Journal'"
    )
    reports: list[dict] = []
    for _ in range(60):  # bounded; journald writes it as it starts, readers may see it late
        found = h.run(query)  # no entry yet may be exit 1 ("-- No entries --"), not an error
        assert found.rc in (0, 1) and not found.stderr.strip(), (found.rc, found.stderr)
        reports = [json.loads(line) for line in found.stdout.splitlines() if line.startswith("{")]
        if reports:
            break
        time.sleep(0.5)
    assert reports, f"{name}: journald opened no System Journal (is the journal persistent?)"
    report = reports[-1]
    assert int(report.get("MAX_USE", -1)) == want, (
        f"{name}: journald enforces max {report.get('MAX_USE_PRETTY')}, not "
        f"common_journald_system_max_use: {report.get('MESSAGE')}"
    )
    # Retention acts only on entries a month old, which no test can wait for: here, the merged
    # configuration journald reads (the drop-in in effect, not overridden by a later one).
    retention = setting(FLEET.host(name), "common_journald_max_retention")
    merged = h.check_output("systemd-analyze cat-config systemd/journald.conf")
    values = re.findall(r"^MaxRetentionSec=(.*)$", merged, re.MULTILINE)
    assert values and values[-1] == retention, merged


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"common_admin_users": [{"ssh_keys": ["ssh-ed25519 AAAA x"]}]}, "common_admin_users"),
        ({"common_unattended_upgrades": "perhaps"}, "common_unattended_upgrades"),
        ({"hardening_sshd_permit_root_login": "yes"}, "hardening_sshd_permit_root_login"),
        (
            {"common_firewall_allow": [{"port": "ssh!", "from_groups": ["web"]}]},
            "common_firewall_allow",
        ),
    ],
)
def test_bad_variables_stop_before_any_change(lab, converged, extra, variable):
    recap = assert_refused_before_any_change("common.yml", extra, variable, limit="lb1")
    assert recap.hosts["lb1"]["failed"] == 1
