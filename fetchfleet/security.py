"""`fab security.report`: per host, what the security baseline enforces and what it knowingly
does not (and why), the ports the firewall data opens, and a port scan from a host that should
reach almost nothing, compared against that data.

Nothing is re-derived here: the controls come from the record roles/hardening writes on each host
(checked live by programs/hardening_state.py), the ports from the roles' own firewall rules as a
converge would write them (playbooks/firewall-collect.yml, read by fetchfleet.aws.firewall), and
the scan (programs/port_scan.py, a TCP connect scan) runs on the scanning host itself.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from fetchfleet import remote
from fetchfleet.aws.firewall import Rule, collect_env
from fetchfleet.errors import FleetError
from fetchfleet.inventory import Fleet, Host
from fetchfleet.output import Clock, table

# Scanned besides every port a role opens: the usual services, so a listener nobody declared (a
# database left on its default port, a debug server) shows up too. Not 1-65535: a port the
# firewall drops costs the whole connect timeout, and 65535 of them per host would take hours.
COMMON_PORTS = (
    21, 22, 23, 25, 53, 80, 110, 111, 135, 139, 143, 389, 443, 445, 465, 514, 587, 631, 636, 873,
    993, 995, 1080, 1433, 1521, 2049, 2375, 2376, 2379, 3000, 3128, 3306, 3389, 4369, 4949, 5000,
    5432, 5601, 5672, 5900, 5984, 6379, 6432, 6443, 6881, 7000, 8000, 8008, 8080, 8081, 8088,
    8443, 8888, 8983, 9000, 9042, 9090, 9091, 9100, 9200, 9300, 9418, 10050, 11211, 15672, 19531,
    19532, 25672, 27017, 50000,
)  # fmt: skip
MAX_RANGE = 1024


@dataclass(frozen=True)
class HostControls:
    host: str
    results: list[dict[str, Any]]
    restart_needed: list[str]
    container: bool | None
    error: str | None = None

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r["status"] == status)


@dataclass
class Report:
    controls: list[HostControls]
    rules: dict[str, list[Rule]]
    scanner: str | None = None
    allowed: dict[str, set[int]] = field(default_factory=dict)
    found: dict[str, set[int]] = field(default_factory=dict)
    scan_seconds: float = 0.0
    tried: int = 0

    @property
    def unexpected(self) -> dict[str, set[int]]:
        return {
            h: ports - self.allowed.get(h, set())
            for h, ports in self.found.items()
            if ports - self.allowed.get(h, set())
        }

    @property
    def drift(self) -> list[tuple[str, dict[str, Any]]]:
        return [(c.host, r) for c in self.controls for r in c.results if r["status"] == "drift"]

    @property
    def clean(self) -> bool:
        return (
            not self.drift and not self.unexpected and all(c.error is None for c in self.controls)
        )


def reaches(rule: Rule, source: Host) -> bool:
    """Does the rule let `source` in (by group, by name or by its address in a network)?"""
    if set(rule.from_groups) & set(source.groups) or source.name in rule.from_hosts:
        return True
    address = ipaddress.ip_address(source.address)
    return any(address in ipaddress.ip_network(n) for n in rule.from_networks)


def allowed_from(rules: dict[str, list[Rule]], fleet: Fleet, source: Host) -> dict[str, set[int]]:
    """Per other host, the TCP ports the firewall data lets `source` open."""
    allowed: dict[str, set[int]] = {}
    for host in fleet.hosts:
        if host.name == source.name:
            continue
        ports: set[int] = set()
        for rule in rules.get(host.name, []):
            if rule.proto == "tcp" and reaches(rule, source):
                ports.update(range(rule.ports[0], rule.ports[1] + 1))
        allowed[host.name] = ports
    return allowed


def scan_ports(rules: dict[str, list[Rule]]) -> list[int]:
    """Every TCP port any rule opens (ranges up to MAX_RANGE ports whole), and COMMON_PORTS."""
    ports = set(COMMON_PORTS)
    for host_rules in rules.values():
        for rule in host_rules:
            low, high = rule.ports
            if rule.proto == "tcp":
                ports.update(range(low, min(high, low + MAX_RANGE - 1) + 1))
    return sorted(ports)


def host_controls(host: Host) -> HostControls:
    try:
        state = remote.run_program(remote.connect(host), "hardening_state", timeout=180)
    except FleetError as err:
        return HostControls(host.name, [], [], None, error=str(err))
    if not state["record"]:
        return HostControls(
            host.name,
            [],
            [],
            None,
            error="no /etc/fetchfleet/hardening.json: not converged with roles/hardening",
        )
    return HostControls(host.name, state["results"], state["restart_needed"], state["container"])


def scanner_host(fleet: Fleet, name: str | None) -> Host | None:
    """The host to scan from: `name`, else the first lab seeder (it serves only the lab's tests)."""
    if name:
        return fleet.host(name)
    seeders = fleet.group("lab_seeders")
    return seeders[0] if seeders else None


def build_report(fleet: Fleet, scan_from: str | None = None, clock: Clock | None = None) -> Report:
    clock = clock or Clock()
    hosts = list(fleet.hosts)
    clock.say(f"reading the firewall rules of {len(hosts)} hosts (playbooks/firewall-collect.yml)")
    rules = collect_env(str(fleet.path), [h.name for h in hosts])
    clock.say("checking every host's security controls (programs/hardening_state.py)")
    controls = remote.parallel(host_controls, hosts)
    for c in controls:
        clock.say(
            c.error
            or f"{c.count('ok')} ok, {c.count('drift')} drift, {c.count('skipped')} knowingly not",
            c.host,
        )
    report = Report(controls, rules)
    scanner = scanner_host(fleet, scan_from)
    if scanner is None:
        clock.say("no host to scan from (no lab_seeders host; pass --scan-from HOST): scan skipped")
        return report
    report.scanner = scanner.name
    report.allowed = allowed_from(rules, fleet, scanner)
    ports = scan_ports(rules)
    targets = {
        h.name: {"address": h.address, "ports": ports} for h in hosts if h.name != scanner.name
    }
    clock.say(f"TCP connect scan of {len(ports)} ports on {len(targets)} hosts", scanner.name)
    scan = remote.run_program(
        remote.connect(scanner), "port_scan", json.dumps(targets), "1.0", timeout=900
    )
    report.found = {h: set(p) for h, p in scan["open"].items()}
    report.scan_seconds, report.tried = float(scan["seconds"]), int(scan["tried"])
    clock.say(f"{report.tried} ports tried in {report.scan_seconds:.1f}s", scanner.name)
    return report


def _ports(ports: set[int]) -> str:
    return ", ".join(str(p) for p in sorted(ports)) or "-"


def _rule_ports(rule: Rule) -> str:
    low, high = rule.ports
    return f"{rule.proto} {low}" if low == high else f"{rule.proto} {low}-{high}"


def _sources(rule: Rule) -> str:
    parts = (
        [f"group {g}" for g in rule.from_groups] + list(rule.from_hosts) + list(rule.from_networks)
    )
    return ", ".join(parts) if len(parts) <= 4 else f"{', '.join(parts[:4])} +{len(parts) - 4}"


def render(report: Report) -> str:
    out = ["Controls (roles/hardening, checked live)"]
    out.append(table([
        {"host": c.host, "ok": c.count("ok"), "drift": c.count("drift"), "knowingly not": c.count("skipped"),
         "needs restart": ", ".join(c.restart_needed) or "-", "error": c.error or ""}
        for c in report.controls
    ]))  # fmt: skip
    if report.drift:
        out += ["", "Drift (enforced, but not so on the host)"]
        out.append(table([
            {"host": h, "control": f"{r['kind']} {r['key']}", "expected": json.dumps(r["expect"]), "actual": json.dumps(r.get("actual"))}
            for h, r in report.drift
        ]))  # fmt: skip
    reasons: dict[str, dict[str, set[str]]] = {}
    for c in report.controls:
        for r in c.results:
            if r["status"] == "skipped":
                reasons.setdefault(r["reason"], {}).setdefault(
                    f"{r['kind']} {r['key']}", set()
                ).add(c.host)
    out += ["", "Knowingly not enforced (and why)"]
    for reason, controls in sorted(reasons.items()):
        hosts = sorted(set().union(*controls.values()))
        names = sorted(controls)
        shown = ", ".join(names[:6]) + (f" +{len(names) - 6} more" if len(names) > 6 else "")
        out.append(f"- {shown}\n    on {', '.join(hosts)}: {reason}")
    out += ["", "Open ports, as the firewall data says (plus ssh from the admin networks)"]
    out.append(table([
        {"host": host, "port": _rule_ports(rule), "rule set": rule.name, "from": _sources(rule)}
        for host in sorted(report.rules) for rule in report.rules[host]
    ]))  # fmt: skip
    if report.scanner:
        out += [
            "",
            f"Port scan from {report.scanner} (TCP connect, {report.tried} tries, {report.scan_seconds:.1f}s)",
        ]
        out.append(table([
            {"host": h, "allowed to it": _ports(report.allowed.get(h, set())), "found open": _ports(found),
             "unexpected": _ports(found - report.allowed.get(h, set()))}
            for h, found in sorted(report.found.items())
        ]))  # fmt: skip
    verdict = (
        "clean" if report.clean else "FINDINGS: see drift, errors and unexpected open ports above"
    )
    out += ["", f"security report: {verdict}"]
    return "\n".join(out)
