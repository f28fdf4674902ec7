"""fetchfleet.security: which ports the firewall data lets a host reach, what is scanned, the port
scan program (run here against real loopback listeners), and the report's verdict."""

from __future__ import annotations

import socket

from conftest import free_port

from fetchfleet.aws.firewall import Rule
from fetchfleet.inventory import Fleet, Host
from fetchfleet.programs.port_scan import scan
from fetchfleet.security import COMMON_PORTS, HostControls, Report, allowed_from, render, scan_ports


def host(name: str, address: str, *groups: str) -> Host:
    return Host(name, address, groups, {})


FLEET = Fleet(
    "test",
    None,  # type: ignore[arg-type]
    (
        host("lb1", "10.77.0.11", "loadbalancers"),
        host("web1", "10.77.0.21", "web"),
        host("db1", "10.77.0.41", "db_primary"),
        host("seed1", "10.77.0.81", "lab_seeders"),
    ),
    {},
)


def rule(
    host_: str, port: int | tuple[int, int], proto: str = "tcp", groups=(), hosts=(), networks=()
) -> Rule:
    ports = port if isinstance(port, tuple) else (port, port)
    return Rule(host_, "test", proto, ports, tuple(groups), tuple(hosts), tuple(networks))


RULES = {
    "lb1": [rule("lb1", 80, networks=["10.77.0.0/24"]), rule("lb1", 22, networks=["10.77.0.1/32"])],
    "web1": [
        rule("web1", 80, groups=["loadbalancers"]),
        rule("web1", 6881, "udp", networks=["0.0.0.0/0"]),
    ],
    "db1": [rule("db1", 6432, groups=["web"]), rule("db1", (7000, 7002), hosts=["seed1"])],
    "seed1": [],
}


def test_the_seeder_may_reach_what_names_it_its_groups_or_its_network() -> None:
    allowed = allowed_from(RULES, FLEET, FLEET.host("seed1"))
    assert allowed == {"lb1": {80}, "web1": set(), "db1": {7000, 7001, 7002}}


def test_the_scan_covers_every_declared_port_and_the_common_ones() -> None:
    ports = scan_ports(RULES)
    assert {80, 22, 6432, 7000, 7001, 7002} <= set(ports) and set(COMMON_PORTS) <= set(ports)
    assert 6881 in ports  # in COMMON_PORTS; UDP rules themselves are not scanned
    assert ports == sorted(set(ports))


def test_the_port_scan_program_finds_listeners_and_only_them() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    open_port, closed_port = listener.getsockname()[1], free_port()
    try:
        found = scan({"here": {"address": "127.0.0.1", "ports": [open_port, closed_port]}}, 0.5)
    finally:
        listener.close()
    assert found["open"] == {"here": [open_port]} and found["tried"] == 2


def test_the_verdict_names_unexpected_ports_and_drift() -> None:
    ok = HostControls(
        "lb1",
        [{"kind": "sysctl", "key": "k", "status": "ok", "expect": "1", "actual": "1"}],
        [],
        True,
    )
    report = Report([ok], RULES, "seed1", allowed={"lb1": {80}}, found={"lb1": {80}})
    assert report.clean and "security report: clean" in render(report)
    report.found = {"lb1": {80, 22}}
    assert report.unexpected == {"lb1": {22}} and "FINDINGS" in render(report)
    drift = HostControls(
        "web1",
        [{"kind": "sshd", "key": "ciphers", "status": "drift", "expect": ["x"], "actual": ["y"]}],
        [],
        True,
    )
    skipped = HostControls(
        "db1",
        [
            {
                "kind": "unit",
                "key": "auditd.service",
                "status": "skipped",
                "reason": "no audit netlink",
            }
        ],
        [],
        True,
    )
    text = render(Report([drift, skipped], RULES))
    assert "sshd ciphers" in text and "no audit netlink" in text and "unit auditd.service" in text
