"""The lab itself: idempotent up, fresh boxes, and the fault primitives later drills use.

Faults are played on ops1 (monitoring/jenkins, nothing stateful yet) and the fresh box on backup1;
every test leaves its host running, converged and healed, so the final converge stays changed=0.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time

import pytest

from fetchfleet import lab as L
from fetchfleet.playbook import run_playbook

FAULTY = "ops1"


def ssh_works(lab: L.Lab, name: str) -> bool:
    return L.run_on(lab, name, "true", check=False).returncode == 0


def test_up_twice_does_nothing_the_second_time(lab):
    known_hosts = lab.known_hosts.read_text()
    before = {h.name: L._record(lab, h.name)["nspawn"] for h in lab.hosts}
    t0 = time.monotonic()
    assert L.up(lab) == {}
    print(f"\nFIGURE second lab.up: {time.monotonic() - t0:.2f}s")
    assert {h.name: L._record(lab, h.name)["nspawn"] for h in lab.hosts} == before
    assert lab.known_hosts.read_text() == known_hosts


def test_status_shows_every_host_running(lab):
    rows = L.status(lab)
    assert [r["host"] for r in rows] == [h.name for h in lab.hosts]
    assert {(r["state"], r["ssh"], r["net"]) for r in rows} == {("running", "yes", "up")}


def test_every_host_finished_booting_and_admits_users(lab):
    """No unit left failed by boot, and no /run/nologin: nspawn hosts under load sometimes lose
    systemd-user-sessions to a cgroup race (status 219), and then only root may log in.
    wait_until_up repairs that; this checks every host of this run."""
    for host in lab.hosts:
        # "degraded" is a failed unit: named here, since is-system-running only counts them.
        state = L.run_on(lab, host.name, "systemctl is-system-running", check=False).stdout
        failed = L.run_on(lab, host.name, "systemctl --failed --plain --no-legend", check=False)
        assert state.strip() == "running", f"{host.name}: {state.strip()}: {failed.stdout}"
        sessions = L.run_on(
            lab, host.name, "systemctl is-active systemd-user-sessions", check=False
        )
        assert sessions.stdout.strip() == "active", (host.name, sessions.stdout)
        nologin = L.run_on(lab, host.name, "test -e /run/nologin", check=False)
        assert nologin.returncode != 0, f"{host.name}: /run/nologin is left"
        # Reached at boot (wait_until_up), not first by a service that a converge starts.
        online = L.run_on(lab, host.name, "systemctl is-active network-online.target", check=False)
        assert online.stdout.strip() == "active", (host.name, online.stdout)


def test_hosts_reach_each_other_by_name_and_the_registry(lab):
    assert "10.77.0.41" in L.run_on(lab, "web1", "getent hosts db1").stdout
    L.run_on(lab, "web1", "apt-get update -qq")  # through the NAT to the package registry


def test_reset_gives_a_fresh_empty_root(lab, converged):
    name = "backup1"
    L.run_on(lab, name, "echo old > /root/marker")
    machine_id = L.run_on(lab, name, "cat /etc/machine-id").stdout
    took = L.reset(lab, name)
    print(f"\nFIGURE fresh box {name}: booted in {took:.1f}s")
    assert L.run_on(lab, name, "test -e /root/marker", check=False).returncode == 1
    assert L.run_on(lab, name, "cat /etc/machine-id").stdout != machine_id
    assert (
        L.run_on(lab, name, "test -e /etc/nftables.d", check=False).returncode == 1
    )  # unconverged
    recap = run_playbook("site.yml", limit=name, echo=False)
    assert recap.ok and recap.hosts[name]["changed"] > 0


def test_killed_host_comes_back_with_its_disk(lab):
    L.run_on(lab, FAULTY, "echo kept > /root/kept && sync")
    L.kill_host(lab, FAULTY)
    assert L.host_state(lab, FAULTY) == "stopped"
    assert L.veth(FAULTY) not in [link["ifname"] for link in L._links()]
    assert not L._ssh_ready(lab, lab.host(FAULTY))
    booted = L.up(lab, [FAULTY])
    assert FAULTY in booted
    assert L.run_on(lab, FAULTY, "cat /root/kept").stdout.strip() == "kept"


def test_host_orphaned_by_a_killed_nspawn_is_recovered(lab):
    """What a killed session leaves behind: nspawn gone, maybe its host still running, mounts."""
    record = L._record(lab, FAULTY)
    assert "leader" in record, f"the host's PID 1 was not recorded: {record}"
    os.kill(record["nspawn"].pid, signal.SIGKILL)
    assert L._wait_dead([record["nspawn"]], 10)
    assert L.host_state(lab, FAULTY) == "stopped"
    assert L.is_mounted(lab.root(FAULTY))
    L.up(lab, [FAULTY])
    assert not record["leader"].alive(), "the orphaned PID 1 must have been killed"
    assert ssh_works(lab, FAULTY)


def test_cut_and_heal_the_network(lab):
    L.cut_network(lab, FAULTY)
    try:
        assert not L.tcp_open(lab, "web1", FAULTY, 22, timeout=1)
        assert not L._ssh_ready(lab, lab.host(FAULTY))
        assert next(r for r in L.status(lab) if r["host"] == FAULTY)["net"] == "CUT"
    finally:
        L.heal_network(lab, FAULTY)
    assert ssh_works(lab, FAULTY)


def test_fill_the_disk_then_free_it(lab):
    written = L.fill_disk(lab, FAULTY)
    try:
        assert written > 0
        proc = L.run_on(lab, FAULTY, "echo x > /var/tmp/one-more-byte", check=False)
        assert proc.returncode != 0 and "No space left on device" in proc.stderr
    finally:
        L.free_disk(lab, FAULTY)
    L.run_on(lab, FAULTY, "echo x > /var/tmp/one-more-byte && rm /var/tmp/one-more-byte")


def test_a_host_that_does_not_come_up_in_time_is_named(lab):
    L.stop_host(lab, FAULTY)
    impatient = dataclasses.replace(lab, boot_timeout=0.01)
    with pytest.raises(L.LabError, match=rf"{FAULTY}: did not answer SSH within 0s"):
        L.up(impatient, [FAULTY])
    L.up(lab, [FAULTY])  # still booting: up waits for it instead of starting another
    assert ssh_works(lab, FAULTY)


def test_a_command_that_exits_without_reading_its_input_reports_its_own_status(lab):
    """The deploy lock's `set -C; cat > LOCK` refuses at once when the lock exists; its stdin
    may still be on its way. 8 MB cannot all be sent before `exit 3` closes the channel."""
    from fetchfleet import remote
    from fetchfleet.inventory import load_fleet

    runner = remote.connect(load_fleet("lab").host("web1"))
    done = runner.run("exit 3", stdin="x" * (8 << 20), check=False)
    assert done.returncode == 3
    lock = "/tmp/fetchfleet-test-noclobber"
    runner.run(f"rm -f {lock}; echo held > {lock}")
    refused = runner.run(f"set -C; cat > {lock}", stdin="y" * (8 << 20), check=False)
    assert refused.returncode != 0 and "cannot overwrite" in refused.stderr
    assert runner.run(f"cat {lock}; rm {lock}").stdout == "held\n"
