"""Security groups derived from the roles' firewall rules: the same data as nftables.

One security group per tier, `fetchfleet-<env>-<tier>`, on each of the tier's instances: it is
both the tier's identity and its inbound rules.

- "port P from group G" becomes P from the security group of every tier (with hosts) that is
  in G, so a host added to G is let in by membership, without a rule change;
- "from networks" becomes a CIDR rule, "from hosts" the host's private address (/32);
- a tier's hosts share one security group, so they must have the same rules (the roles give
  them the same groups, so they do unless host_vars make them differ: that is refused).

Egress stays AWS's default (all), like nftables' output policy. The base ruleset's ICMP accepts
are not part of the roles' data and are not opened here: the security groups are the stricter
layer for ICMP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fetchfleet.aws.firewall import FirewallError, Rule
from fetchfleet.aws.spec import Spec


def group_name(environment: str, tier: str) -> str:
    return f"fetchfleet-{environment}-{tier}"


@dataclass(frozen=True, order=True)
class Permission:
    """An inbound permission: what identifies a rule in a security group (not its description).

    source: `sg:NAME` (one of ours), `cidr:CIDR`, `host:NAME` (a host not created yet: its
    address is known only once it runs), or what AWS has that we never write (`sg-id:ID`,
    `cidr6:CIDR`, `prefix-list:ID`).
    """

    proto: str
    low: int
    high: int
    source: str

    def text(self) -> str:
        ports = (
            "all"
            if self.low == -1
            else (str(self.low) if self.low == self.high else f"{self.low}-{self.high}")
        )
        kind, _, value = self.source.partition(":")
        origin = {"sg": value, "cidr": value, "host": f"{value}'s address (once it runs)"}.get(
            kind, f"{kind} {value}"
        )
        return f"{self.proto} {ports} from {origin}"


# per tier: permission -> description (the rule sets it comes from, e.g. "postgresql")
Desired = dict[str, dict[Permission, str]]


def desired(spec: Spec, rules: dict[str, list[Rule]], addresses: dict[str, str]) -> Desired:
    """The permissions each tier's security group must have; FirewallError if a tier's hosts differ."""
    env = spec.target.environment
    sources: dict[str, list[str]] = {}
    for tier in spec.tiers:
        if tier.count:
            for group in tier.groups:
                sources.setdefault(group, []).append(group_name(env, tier.name))
    result: Desired = {}
    problems = []
    for tier in spec.tiers:
        per_host = {
            host: _permissions(rules.get(host, []), sources, addresses) for host in tier.hosts
        }
        merged: dict[Permission, set[str]] = {}
        for perms in per_host.values():
            for perm, names in perms.items():
                merged.setdefault(perm, set()).update(names)
        first = next(iter(per_host), None)
        for host, perms in per_host.items():
            if first is not None and set(perms) != set(per_host[first]):
                only_here = sorted(p.text() for p in set(perms) - set(per_host[first]))
                only_there = sorted(p.text() for p in set(per_host[first]) - set(perms))
                problems.append(
                    f"tier {tier.name}: {host} and {first} have different firewall rules "
                    f"({host} only: {only_here or 'none'}; {first} only: {only_there or 'none'})"
                )
        result[tier.name] = {p: ", ".join(sorted(n)) for p, n in sorted(merged.items())}
    if problems:
        raise FirewallError(
            "a tier's hosts share one security group, so they need the same rules; nothing was "
            "sent to AWS (split the tier, or give its hosts the same variables):\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
    return result


def _permissions(
    rules: list[Rule], sources: dict[str, list[str]], addresses: dict[str, str]
) -> dict[Permission, set[str]]:
    found: dict[Permission, set[str]] = {}
    for rule in rules:
        low, high = rule.ports
        origins = [f"sg:{sg}" for group in rule.from_groups for sg in sources.get(group, [])]
        origins += [
            f"cidr:{addresses[h]}/32" if h in addresses else f"host:{h}" for h in rule.from_hosts
        ]
        origins += [f"cidr:{network}" for network in rule.from_networks]
        for origin in origins:
            found.setdefault(Permission(rule.proto, low, high, origin), set()).add(rule.name)
    return found


def from_aws(rule: dict[str, Any], names: dict[str, str]) -> Permission:
    """A rule as describe_security_group_rules gives it; `names` maps our groups' ids to names."""
    proto = {"-1": "all"}.get(rule["IpProtocol"], rule["IpProtocol"])
    low, high = rule.get("FromPort", -1), rule.get("ToPort", -1)
    if "CidrIpv4" in rule:
        source = f"cidr:{rule['CidrIpv4']}"
    elif "CidrIpv6" in rule:
        source = f"cidr6:{rule['CidrIpv6']}"
    elif "ReferencedGroupInfo" in rule:
        group_id = rule["ReferencedGroupInfo"]["GroupId"]
        source = f"sg:{names[group_id]}" if group_id in names else f"sg-id:{group_id}"
    else:
        source = f"prefix-list:{rule.get('PrefixListId', '?')}"
    return Permission(proto, low, high, source)


def to_aws(perm: Permission, description: str, ids: dict[str, str]) -> dict[str, Any]:
    """An IpPermissions entry for authorize_security_group_ingress; `ids` maps our names to ids."""
    kind, _, value = perm.source.partition(":")
    entry: dict[str, Any] = {"IpProtocol": perm.proto, "FromPort": perm.low, "ToPort": perm.high}
    if kind == "sg":
        entry["UserIdGroupPairs"] = [{"GroupId": ids[value], "Description": description}]
    elif kind == "cidr":
        entry["IpRanges"] = [{"CidrIp": value, "Description": description}]
    else:
        raise ValueError(f"never written by fetchfleet: {perm.text()}")
    return entry
