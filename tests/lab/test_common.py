"""The common role on every lab host: sshd, firewall, users, services, /etc/hosts."""

from __future__ import annotations

import subprocess
import time

import pytest

from fetchfleet.inventory import load_fleet
from fetchfleet.lab import run_on, tcp_open
from fetchfleet.playbook import run_playbook

HOSTS = [h.name for h in load_fleet("lab").hosts]
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


def test_journal_is_limited(converged, host):
    conf = host("mq1").file("/etc/systemd/journald.conf.d/10-fetchfleet.conf").content_string
    assert "SystemMaxUse=" in conf and "MaxRetentionSec=" in conf


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ('{"common_admin_users": [{"ssh_keys": ["ssh-ed25519 AAAA x"]}]}', "name"),
        ('{"common_unattended_upgrades": "perhaps"}', "common_unattended_upgrades"),
        ('{"common_sshd_permit_root_login": "yes"}', "common_sshd_permit_root_login"),
        (
            '{"common_firewall_allow": [{"port": "ssh!", "from_groups": ["web"]}]}',
            "common_firewall_allow",
        ),
    ],
)
def test_bad_variables_stop_before_any_change(lab, converged, extra, named):
    recap = run_playbook("common.yml", limit="lb1", extra=["-e", extra], echo=False)
    assert not recap.ok
    assert recap.hosts["lb1"]["failed"] == 1
    assert recap.hosts["lb1"]["changed"] == 0
    assert named in recap.output
