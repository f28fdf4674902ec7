"""Every host's firewall rules, as the roles pass them to common's firewall entry point.

Ansible evaluates them, not Python: playbooks/firewall-collect.yml runs site.yml's own plays
against the declared hosts (a throw-away inventory: the declared hosts in their groups, with the
environment's group_vars and host_vars), limited to the firewall tasks, in common's collect mode,
which records each rule set instead of writing nftables. So a rule changed in a role's defaults,
in the inventory, or a new role that opens a port, reaches the security groups the same way it
reaches nftables, and no second copy of the rules exists.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fetchfleet.aws import AwsError
from fetchfleet.aws.spec import SUITE_GROUPS, Spec
from fetchfleet.playbook import run_playbook

PLAYBOOK = "firewall-collect.yml"
_PORTS = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")


class FirewallError(AwsError):
    """The roles' rules could not be read, or one of them cannot become a security group rule."""


@dataclass(frozen=True)
class Rule:
    """One rule of one host: `proto` port(s) from groups, hosts, networks (as the roles wrote it)."""

    host: str
    name: str  # the rule set: the role's drop-in name (nginx, postgresql, …), ssh or host
    proto: str
    ports: tuple[int, int]
    from_groups: tuple[str, ...]
    from_hosts: tuple[str, ...]
    from_networks: tuple[str, ...]


def collect(spec: Spec) -> dict[str, list[Rule]]:
    """The declared hosts' rules, per host; FirewallError names every bad rule."""
    # Kept when the run fails, so the command in the error can be run again; removed otherwise.
    work = Path(tempfile.mkdtemp(prefix=f"fetchfleet-firewall-{spec.target.environment}-"))
    inventory = write_inventory(spec, work / "inventory")
    collected = _run_collect(str(inventory), work)
    shutil.rmtree(work)
    return parse(spec, collected)


def collect_env(env: str, hosts: Iterable[str]) -> dict[str, list[Rule]]:
    """The rules of an inventory's own hosts, as a converge would write them (fab security.report)."""
    work = Path(tempfile.mkdtemp(prefix="fetchfleet-firewall-"))
    collected = _run_collect(env, work)
    shutil.rmtree(work)
    return parse_hosts(set(hosts), collected)


def _run_collect(env: str, work: Path) -> dict[str, Any]:
    out = work / "rules.json"
    extra = {
        "common_firewall_collect": True,
        "common_firewall_collect_file": str(out),
        "ansible_connection": "local",
    }
    argv = ["--check", "--tags", "firewall", "--skip-tags", "always", "-e", json.dumps(extra)]
    recap = run_playbook(PLAYBOOK, env=env, extra=argv, echo=False)
    if not recap.ok or not out.is_file():
        raise FirewallError(
            f"reading the roles' firewall rules failed (ansible-playbook exit {recap.returncode}):\n"
            + _failure(recap.output)
            + f"\n  -> look closer (from the repository): ansible-playbook -i {env} playbooks/{PLAYBOOK} "
            + " ".join(_quote(a) for a in argv)
            + " -v"
        )
    return json.loads(out.read_text())


def write_inventory(spec: Spec, path: Path) -> Path:
    """The declared hosts in their groups, with the environment's own variables beside them."""
    path.mkdir(parents=True)
    children: dict[str, Any] = {g: {"hosts": {}} for g in SUITE_GROUPS}
    for host, tier in spec.hosts.items():
        for group in tier.groups:
            children[group]["hosts"][host] = None
    document = {
        "all": {
            "hosts": {host: {"ansible_host": host} for host in spec.hosts},
            "children": {g: v for g, v in children.items() if v["hosts"]},
        }
    }
    (path / "hosts.yml").write_text(yaml.safe_dump(document, sort_keys=False))
    for vars_dir in ("group_vars", "host_vars"):
        source = spec.target.inventory / vars_dir
        if source.is_dir():
            (path / vars_dir).symlink_to(source)
    return path


def parse(spec: Spec, collected: dict[str, Any]) -> dict[str, list[Rule]]:
    """Rules from collect mode's JSON (host -> rule set name -> rules), each one checked."""
    return parse_hosts(set(spec.hosts), collected)


def parse_hosts(known: set[str], collected: dict[str, Any]) -> dict[str, list[Rule]]:
    """parse, for the hosts `known` (the declared hosts, or an inventory's)."""
    problems: list[str] = []
    rules: dict[str, list[Rule]] = {host: [] for host in known}
    for host, sets in sorted(collected.items()):
        if host not in rules:
            problems.append(f"{host}: recorded rules, but is not a declared host")
            continue
        for name, items in sorted((sets or {}).items()):
            for item in items or []:
                rule = _rule(known, host, name, item, problems)
                if rule:
                    rules[host].append(rule)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise FirewallError(
            f"{len(problems)} firewall rule(s) cannot become security group rules; nothing was "
            f"sent to AWS:\n{lines}"
        )
    return rules


def _rule(known: set[str], host: str, name: str, item: Any, problems: list[str]) -> Rule | None:
    where = f"{host}: rule of {name} {item!r}"
    if not isinstance(item, dict):
        problems.append(f"{where}: not a mapping")
        return None
    ports = parse_ports(item.get("port"))
    if ports is None:
        problems.append(f"{where}: port {item.get('port')!r} is not N or 'N-M' within 1-65535")
    proto = item.get("proto", "tcp")
    if proto not in ("tcp", "udp"):
        problems.append(f"{where}: proto {proto!r} is not tcp or udp")
    groups = _strings(item.get("from_groups"))
    hosts = _strings(item.get("from_hosts"))
    networks = _strings(item.get("from_networks"))
    for group in groups:
        if group not in SUITE_GROUPS:
            problems.append(f"{where}: from_groups names {group!r}, not one of the suite's groups")
    for other in hosts:
        if other not in known:
            problems.append(f"{where}: from_hosts names {other!r}, not a declared host")
    for network in networks:
        if not _ipv4_network(network):
            problems.append(
                f"{where}: from_networks {network!r} is not an IPv4 CIDR (nft: ip saddr)"
            )
    if not (groups or hosts or networks):
        problems.append(f"{where}: no from_groups, from_hosts or from_networks")
    if ports is None or proto not in ("tcp", "udp"):
        return None
    return Rule(host, name, proto, ports, groups, hosts, networks)


def parse_ports(value: Any) -> tuple[int, int] | None:
    """80 or "6881-6889" (what common's rules accept) as (low, high) within 1-65535."""
    if isinstance(value, bool):
        return None
    match = _PORTS.match(str(value).strip())
    if not match:
        return None
    low, high = int(match[1]), int(match[2] or match[1])
    if not 1 <= low <= high <= 65535:
        return None
    return low, high


def _strings(value: Any) -> tuple[str, ...]:
    if value in (None, ""):
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def _ipv4_network(value: str) -> bool:
    try:
        return isinstance(ipaddress.ip_network(value, strict=True), ipaddress.IPv4Network)
    except ValueError:
        return False


def _failure(output: str) -> str:
    """The failed task, and each host's failure with its message, from ansible-playbook's output."""
    lines = output.splitlines()
    fatal = [i for i, line in enumerate(lines) if line.startswith(("fatal:", "failed:"))]
    if not fatal:  # a playbook that does not even load: the error is at the end
        return "\n".join("    " + line for line in lines[-15:])
    task = next((lines[i] for i in range(fatal[0], -1, -1) if lines[i].startswith("TASK [")), "")
    picked = [task.rstrip(" *")]
    for i in fatal:
        picked.append(lines[i])
        picked += [line for line in lines[i + 1 : i + 5] if line.startswith(" ")][:3]
    return "\n".join("    " + line for line in picked[:20])


def _quote(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in ' {}"') else arg
