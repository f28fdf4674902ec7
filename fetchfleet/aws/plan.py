"""The plan: what EC2 must change to match the declaration, computed before anything changes.

`plan(env)` checks the declaration and the roles' firewall rules first (no API call until both
are sound), then reads what EC2 has and diffs: instances to create or terminate (by name:
<tier>1..<tier>N, the highest numbers go first when a count drops), instances to change in place
(tags, security group, instance type, a bigger volume), security groups and their rules.
What cannot change in place (image, subnet, a smaller volume) is reported as drift, never done
unless the host is named for replacement (terminated, then launched anew as declared).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fetchfleet.aws import AwsError
from fetchfleet.aws.ec2 import Actual, Instance, SecurityGroup, calling, ec2_client, snapshot
from fetchfleet.aws.firewall import Rule, collect
from fetchfleet.aws.security_groups import Permission, desired, group_name
from fetchfleet.aws.spec import ENV_TAG, GROUPS_TAG, PRODUCTION_TAG, TIER_TAG, Spec, Tier, load_spec
from fetchfleet.output import Clock, Progress


@dataclass(frozen=True)
class Create:
    host: str
    tier: Tier

    def text(self) -> str:
        t = self.tier
        return (
            f"create   {self.host}: {t.instance_type}, {t.image}, {t.volume_size} GiB, {t.subnet}, "
            f"groups {','.join(t.groups)}"
        )


@dataclass(frozen=True)
class Terminate:
    instance: Instance
    why: str

    def text(self) -> str:
        return f"terminate {self.instance.name} ({self.instance.id}): {self.why}"


@dataclass(frozen=True)
class Update:
    """One in-place change of an instance: kind is tags, security_groups, volume or instance_type."""

    instance: Instance
    kind: str
    before: str
    after: str
    value: Any  # what apply sets: the tags, the group name, the size or the type

    def text(self) -> str:
        restart = " (stop, change, start: needs --restart)" if self.kind == "instance_type" else ""
        return f"change   {self.instance.name}: {self.kind} {self.before} -> {self.after}{restart}"


@dataclass(frozen=True)
class RuleChange:
    group: str  # security group name
    permission: Permission
    description: str
    rule_id: str = ""  # the rule to revoke

    def text(self, verb: str) -> str:
        why = f"  [{self.description}]" if self.description else ""
        return f"{verb:<8} {self.group}: {self.permission.text()}{why}"


@dataclass
class Plan:
    spec: Spec
    actual: Actual
    rules: dict[str, list[Rule]]
    groups_create: list[str] = field(default_factory=list)  # tier names
    groups_delete: list[SecurityGroup] = field(default_factory=list)
    creates: list[Create] = field(default_factory=list)
    terminates: list[Terminate] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    rules_add: list[RuleChange] = field(default_factory=list)
    rules_remove: list[RuleChange] = field(default_factory=list)
    rules_total: int = 0
    roots: dict[str, str] = field(default_factory=dict)  # image -> root device name

    @property
    def changes(self) -> int:
        return sum(
            len(x)
            for x in (
                self.groups_create,
                self.groups_delete,
                self.creates,
                self.terminates,
                self.updates,
                self.rules_add,
                self.rules_remove,
            )
        )

    def lines(self) -> list[str]:
        env = self.spec.target.environment
        lines = [f"create   security group {group_name(env, t)}" for t in self.groups_create]
        lines += [c.text() for c in self.creates]
        lines += [t.text() for t in self.terminates]
        lines += [u.text() for u in self.updates]
        lines += [r.text("allow") for r in self.rules_add]
        lines += [r.text("revoke") for r in self.rules_remove]
        lines += [f"delete   security group {g.name} ({g.id})" for g in self.groups_delete]
        lines += [f"drift    {d} (not changed by apply)" for d in self.drift]
        return lines

    def summary(self) -> str:
        env = self.spec.target.environment
        if not self.changes:
            return (
                f"{env}: nothing to change: {len(self.spec.hosts)} instances, "
                f"{len(self.spec.tiers)} security groups and {self.rules_total} rules match the "
                f"declaration" + (f" ({len(self.drift)} drift, see above)" if self.drift else "")
            )
        return (
            f"{env}: {len(self.creates)} to create, {len(self.terminates)} to terminate, "
            f"{len(self.updates)} to change, {len(self.groups_create)} security groups to create, "
            f"{len(self.groups_delete)} to delete, {len(self.rules_add)} rules to allow, "
            f"{len(self.rules_remove)} to revoke"
        )


def plan(env: str, out: Progress | None = None, replace: tuple[str, ...] = ()) -> tuple[Plan, Any]:
    """The plan for an environment, and the EC2 client it was read with. Hosts in `replace` are
    terminated and launched anew (how an image or subnet change reaches a running host)."""
    clock = Clock(out)
    spec = load_spec(env)
    unknown = [h for h in replace if h not in spec.hosts]
    if unknown:
        raise AwsError(
            f"--replace {', '.join(unknown)}: not declared hosts (declared: {', '.join(spec.hosts)})"
        )
    clock.say(
        f"declaration: {len(spec.hosts)} hosts in {len(spec.tiers)} tiers ({spec.target.inventory})"
    )
    clock.say("reading the roles' firewall rules (site.yml, firewall tasks only, collect mode)")
    rules = collect(spec)
    desired(spec, rules, {})  # a tier whose hosts disagree is refused before any API call
    clock.say(f"firewall: {sum(len(r) for r in rules.values())} rules of {len(rules)} hosts")
    ec2 = ec2_client(spec.target)
    where = spec.target.endpoint_url or spec.target.region
    clock.say(f"reading {spec.target.environment} from EC2 ({where})")
    actual = snapshot(ec2, spec.target)
    roots = preflight(ec2, spec)
    result = diff(spec, actual, rules, replace)
    result.roots = roots
    return result, ec2


def preflight(ec2: Any, spec: Spec) -> dict[str, str]:
    """What launching needs and only EC2 knows: the images (their root device names, on which the
    volume size is set), the subnets (in the declared VPC) and the key pair. AwsError otherwise."""
    tiers = [t for t in spec.tiers if t.count]
    images = sorted({t.image for t in tiers})
    subnets = sorted({t.subnet for t in tiers})
    if not tiers:
        return {}
    with calling(f"looking up images {', '.join(images)}", spec.target):
        found = ec2.describe_images(ImageIds=images)["Images"]
    roots = {i["ImageId"]: i.get("RootDeviceName", "/dev/xvda") for i in found}
    missing = [i for i in images if i not in roots]
    if missing:
        raise AwsError(f"images {', '.join(missing)} do not exist in {spec.target.region}")
    with calling(f"looking up subnets {', '.join(subnets)}", spec.target):
        found = ec2.describe_subnets(SubnetIds=subnets)["Subnets"]
    elsewhere = [f"{s['SubnetId']} (in {s['VpcId']})" for s in found if s["VpcId"] != spec.vpc]
    if elsewhere:
        raise AwsError(f"subnets outside aws_vpc_id {spec.vpc}: {', '.join(elsewhere)}")
    if spec.key_name:
        with calling(f"looking up key pair {spec.key_name}", spec.target):
            ec2.describe_key_pairs(KeyNames=[spec.key_name])
    return roots


def diff(
    spec: Spec, actual: Actual, rules: dict[str, list[Rule]], replace: tuple[str, ...] = ()
) -> Plan:
    """Declared against actual; pure, so it is computed again after instances exist."""
    result = Plan(spec, actual, rules)
    env = spec.target.environment
    declared = spec.hosts
    matched: dict[str, Instance] = {}
    for instance in actual.instances:  # sorted by name, then launch time: the oldest is kept
        if instance.name not in declared:
            result.terminates.append(Terminate(instance, "not declared (count or tier removed)"))
        elif instance.name in matched:
            result.terminates.append(
                Terminate(
                    instance, f"a second {instance.name} (keeping {matched[instance.name].id})"
                )
            )
        elif instance.name in replace:
            result.terminates.append(Terminate(instance, "replaced (--replace)"))
        else:
            matched[instance.name] = instance
    wanted_groups = {group_name(env, t.name): t for t in spec.tiers}
    result.groups_create = [
        t.name for name, t in wanted_groups.items() if name not in actual.groups
    ]
    result.groups_delete = [g for name, g in actual.groups.items() if name not in wanted_groups]
    ids = actual.ids()
    for host, tier in declared.items():
        instance = matched.get(host)
        if instance is None:
            result.creates.append(Create(host, tier))
            continue
        _compare(result, instance, host, tier, ids.get(group_name(env, tier.name), ""))
    addresses = {name: i.private_ip for name, i in matched.items() if i.private_ip}
    wanted = desired(spec, rules, addresses)
    for tier in spec.tiers:
        name = group_name(env, tier.name)
        have = {r.permission: r for r in actual.groups[name].rules} if name in actual.groups else {}
        for perm, why in wanted[tier.name].items():
            if perm not in have:
                result.rules_add.append(RuleChange(name, perm, why))
        for perm, rule in have.items():
            if perm not in wanted[tier.name]:
                result.rules_remove.append(RuleChange(name, perm, rule.description, rule.id))
        result.rules_total += len(wanted[tier.name])
    return result


def instance_tags(spec: Spec, host: str, tier: Tier) -> dict[str, str]:
    return {
        "Name": host,
        **spec.target.tags,
        TIER_TAG: tier.name,
        GROUPS_TAG: ",".join(tier.groups),
    }


def _compare(result: Plan, instance: Instance, host: str, tier: Tier, group_id: str) -> None:
    spec = result.spec
    want = instance_tags(spec, host, tier)
    have = {k: v for k, v in instance.tags.items() if k in want or k in (ENV_TAG, PRODUCTION_TAG)}
    if have != want:
        before, after = _tag_text(have, want)
        result.updates.append(Update(instance, "tags", before, after, want))
    env_group = group_name(spec.target.environment, tier.name)
    if instance.security_groups != (group_id,):
        names = {g.id: n for n, g in result.actual.groups.items()}
        before = ",".join(names.get(g, g) for g in instance.security_groups) or "none"
        result.updates.append(Update(instance, "security_groups", before, env_group, env_group))
    if instance.instance_type != tier.instance_type:
        result.updates.append(
            Update(
                instance,
                "instance_type",
                instance.instance_type,
                tier.instance_type,
                tier.instance_type,
            )
        )
    if instance.volume_size and instance.volume_size < tier.volume_size:
        result.updates.append(
            Update(
                instance,
                "volume",
                f"{instance.volume_size} GiB",
                f"{tier.volume_size} GiB",
                tier.volume_size,
            )
        )
    elif instance.volume_size > tier.volume_size:
        result.drift.append(
            f"{host}: volume is {instance.volume_size} GiB, declared {tier.volume_size}: EBS volumes do not shrink"
        )
    if instance.image != tier.image:
        result.drift.append(
            f"{host}: runs image {instance.image}, declared {tier.image}: apply --replace {host} to change"
        )
    if instance.subnet != tier.subnet:
        result.drift.append(
            f"{host}: in {instance.subnet}, declared {tier.subnet}: apply --replace {host} to change"
        )


def _tag_text(have: dict[str, str], want: dict[str, str]) -> tuple[str, str]:
    changed = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
    return (
        " ".join(f"{k}={have.get(k, '(none)')}" for k in changed),
        " ".join(f"{k}={want.get(k, '(none)')}" for k in changed),
    )
