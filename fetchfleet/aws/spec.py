"""An environment on EC2, as declared in `inventory/<env>/group_vars/all/aws.yml`, and its checks.

Everything here is read and checked on the control machine before any AWS API call: a bad
declaration (an unknown group, no host for a group the roles need, a malformed id) is refused
with every problem named at once, so nothing is half-created from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fetchfleet.aws import AwsError
from fetchfleet.inventory import init_ansible_plugins, inventory_path

# The suite's groups: the contract between inventories, roles and fab tasks (inventory/lab has
# every one of them; tests/unit/test_aws_spec.py keeps the two in step).
SUITE_GROUPS = (
    "loadbalancers",
    "web",
    "workers",
    "db_primary",
    "db_replicas",
    "rabbitmq",
    "solr",
    "monitoring",
    "jenkins",
    "backup",
    "lab_seeders",
)
# Groups site.yml cannot converge without, and why (the error says it).
REQUIRED_GROUPS = {
    "loadbalancers": "the entry point (roles/nginx's load balancer site)",
    "web": "the app's web hosts (roles/app, the load balancer's upstream)",
    "workers": "Celery and Transmission (roles/app needs a worker for its beat)",
    "db_primary": "the app's database (roles/postgresql needs exactly one primary)",
    "rabbitmq": "the app's broker (roles/app's app_broker_host)",
    "solr": "the app's search (roles/app's app_solr_url)",
}
# Lab only: the seeder's role refuses production groups, and no production fleet has one.
LAB_ONLY_GROUPS = ("lab_seeders",)

DATA_FILE = Path("group_vars") / "all" / "aws.yml"
PLUGIN_FILE = "aws_ec2.yml"
# Tags: what this suite owns, per environment. The EC2 inventory groups hosts by GROUPS_TAG.
ENV_TAG = "fetchfleet:env"
TIER_TAG = "fetchfleet:tier"
GROUPS_TAG = "fetchfleet:groups"
PRODUCTION_TAG = "fetchfleet:production"

_TIER_NAME = re.compile(r"^[a-z]+(-[a-z]+)*$")
_ENV_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
_ID = {"image": "ami", "subnet": "subnet", "vpc": "vpc"}
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ENCRYPTIONS = ("AES256", "aws:kms")
TIER_KEYS = {
    "groups",
    "count",
    "instance_type",
    "image",
    "volume_size",
    "subnet",
    "public_ip",
    "instance_profile",
}
DEFAULT_KEYS = {"instance_type", "image", "volume_size"}


class SpecError(AwsError):
    """The declaration is wrong; every problem is listed, each naming its key."""

    def __init__(self, path: Path, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s), nothing was sent to AWS:\n{lines}")


@dataclass(frozen=True)
class Target:
    """Where an environment lives and what marks its resources."""

    environment: str
    region: str
    endpoint_url: str | None
    production: bool
    inventory: Path

    @property
    def tags(self) -> dict[str, str]:
        tags = {ENV_TAG: self.environment}
        if self.production:
            tags[PRODUCTION_TAG] = "true"
        return tags


@dataclass(frozen=True)
class Tier:
    """Identical instances named <tier>1..<tier>N, each in the same suite groups."""

    name: str
    groups: tuple[str, ...]
    count: int
    instance_type: str
    image: str
    volume_size: int
    subnet: str
    public_ip: bool
    instance_profile: str | None

    @property
    def hosts(self) -> list[str]:
        return [f"{self.name}{i}" for i in range(1, self.count + 1)]


@dataclass(frozen=True)
class Offsite:
    """The offsite backups' S3 bucket (fetchfleet.aws.offsite gives its client)."""

    bucket: str
    region: str
    endpoint_url: str | None
    encryption: str
    kms_key_id: str | None


@dataclass(frozen=True)
class Spec:
    target: Target
    vpc: str
    key_name: str | None
    tiers: tuple[Tier, ...]
    offsite: Offsite | None

    @property
    def hosts(self) -> dict[str, Tier]:
        return {host: tier for tier in self.tiers for host in tier.hosts}

    def members(self, group: str) -> list[str]:
        return [h for t in self.tiers if group in t.groups for h in t.hosts]

    def tier(self, name: str) -> Tier:
        return next(t for t in self.tiers if t.name == name)


def read_data(path: Path) -> dict[str, Any]:
    """group_vars/all of an inventory, as Ansible reads it (files or a directory, vault), without
    parsing the inventory's sources: the EC2 plugin would call AWS."""
    from ansible.inventory.group import Group
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins.loader import vars_loader

    init_ansible_plugins()
    plugin = vars_loader.get("ansible.builtin.host_group_vars")
    return dict(plugin.get_vars(DataLoader(), str(path), [Group("all")]))


def load_target(env: str) -> Target:
    """Only where the environment is: enough for status and destroy."""
    path = inventory_path(env)
    data = read_data(path)
    problems: list[str] = []
    target = _target(path, data, problems)
    if problems or target is None:
        raise SpecError(path / DATA_FILE, problems)
    return target


def load_spec(env: str) -> Spec:
    """The whole declaration, checked; SpecError lists every problem."""
    path = inventory_path(env)
    data = read_data(path)
    problems: list[str] = []
    target = _target(path, data, problems)
    vpc = _aws_id(data.get("aws_vpc_id"), "vpc", "aws_vpc_id", problems)
    subnet = _aws_id(data.get("aws_subnet_id"), "subnet", "aws_subnet_id", problems)
    key_name = _optional_str(data.get("aws_key_name"), "aws_key_name", problems)
    defaults = data.get("aws_instance_defaults") or {}
    if not isinstance(defaults, dict):
        problems.append(f"aws_instance_defaults must be a mapping, got {defaults!r}")
        defaults = {}
    for key in sorted(set(defaults) - DEFAULT_KEYS):
        problems.append(f"aws_instance_defaults.{key}: unknown key (known: {sorted(DEFAULT_KEYS)})")
    tiers = _tiers(data.get("aws_tiers"), defaults, subnet, problems)
    _check_groups(tiers, target, problems)
    offsite = offsite_from(data, problems, target)
    if target is not None:
        problems += plugin_disagreements(path, target)
    if problems or target is None:
        raise SpecError(path / DATA_FILE, problems)
    return Spec(target, vpc, key_name, tuple(tiers), offsite)


def _target(path: Path, data: dict[str, Any], problems: list[str]) -> Target | None:
    if "aws_environment" not in data:
        problems.append(f"aws_environment is not set: is {path.name} an AWS environment?")
        return None
    environment = data["aws_environment"]
    if not isinstance(environment, str) or not _ENV_NAME.match(environment):
        problems.append(f"aws_environment: {environment!r} is not a name like 'staging'")
    region = data.get("aws_region")
    if not isinstance(region, str) or not _REGION.match(region):
        problems.append(f"aws_region: {region!r} is not a region like 'eu-west-1'")
    production = data.get("aws_production", False)
    if not isinstance(production, bool):
        problems.append(f"aws_production must be true or false, got {production!r}")
    endpoint = _endpoint(data.get("aws_endpoint_url"), "aws_endpoint_url", problems)
    return Target(str(environment), str(region), endpoint, production is True, path)


def _tiers(raw: Any, defaults: dict, subnet: str, problems: list[str]) -> list[Tier]:
    if not isinstance(raw, dict) or not raw:
        problems.append("aws_tiers must map tier names to {groups, count, ...}, got " + repr(raw))
        return []
    tiers = []
    for name, item in raw.items():
        where = f"aws_tiers.{name}"
        if not isinstance(name, str) or not _TIER_NAME.match(name):
            problems.append(f"{where}: a tier name is lowercase letters (hosts are named {name}1…)")
        if not isinstance(item, dict):
            problems.append(f"{where} must be a mapping, got {item!r}")
            continue
        for key in sorted(set(item) - TIER_KEYS):
            problems.append(f"{where}.{key}: unknown key (known: {sorted(TIER_KEYS)})")
        values = {**defaults, **item}
        groups = values.get("groups")
        if not isinstance(groups, list) or not groups:
            problems.append(f"{where}.groups must be a list of the suite's groups, got {groups!r}")
            groups = []
        for group in groups:
            if group not in SUITE_GROUPS:
                problems.append(
                    f"{where}.groups: unknown group {group!r} (the suite's groups: "
                    f"{', '.join(SUITE_GROUPS)})"
                )
        count = values.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            problems.append(f"{where}.count must be a whole number >= 0, got {count!r}")
            count = 0
        itype = values.get("instance_type")
        if not isinstance(itype, str) or not _INSTANCE_TYPE.match(itype):
            problems.append(f"{where}.instance_type: {itype!r} is not an EC2 type like 't3.small'")
        image = _aws_id(values.get("image"), "image", f"{where}.image", problems)
        size = values.get("volume_size")
        if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= 16384:
            problems.append(f"{where}.volume_size must be GiB between 8 and 16384, got {size!r}")
        tier_subnet = subnet
        if "subnet" in item:
            tier_subnet = _aws_id(item["subnet"], "subnet", f"{where}.subnet", problems)
        public_ip = values.get("public_ip", False)
        if not isinstance(public_ip, bool):
            problems.append(f"{where}.public_ip must be true or false, got {public_ip!r}")
        profile = _optional_str(
            values.get("instance_profile"), f"{where}.instance_profile", problems
        )
        tiers.append(
            Tier(
                str(name),
                tuple(str(g) for g in groups),
                int(count),
                str(itype),
                image,
                size if isinstance(size, int) else 0,
                tier_subnet,
                public_ip is True,
                profile,
            )
        )
    return tiers


def _check_groups(tiers: list[Tier], target: Target | None, problems: list[str]) -> None:
    hosts: dict[str, int] = {}
    for tier in tiers:
        for group in tier.groups:
            hosts[group] = hosts.get(group, 0) + tier.count
    for group, why in REQUIRED_GROUPS.items():
        if not hosts.get(group):
            declared = [t.name for t in tiers if group in t.groups]
            where = f"tier {', '.join(declared)} has count 0" if declared else "no tier has it"
            problems.append(f"group {group} needs at least one host, {why}: {where}")
    if hosts.get("db_primary", 0) > 1:
        problems.append(
            f"group db_primary has {hosts['db_primary']} hosts; the roles need exactly one"
        )
    if target is not None and target.production:
        for group in LAB_ONLY_GROUPS:
            if hosts.get(group):
                problems.append(f"group {group} is lab only, and this environment is production")


def offsite_from(
    data: dict[str, Any], problems: list[str], target: Target | None = None
) -> Offsite | None:
    """aws_offsite_backups, if declared; region and endpoint default to the environment's."""
    raw = data.get("aws_offsite_backups")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append(f"aws_offsite_backups must be a mapping, got {raw!r}")
        return None
    bucket = raw.get("bucket")
    if not isinstance(bucket, str) or not _BUCKET.match(bucket) or ".." in bucket:
        problems.append(f"aws_offsite_backups.bucket: {bucket!r} is not a valid S3 bucket name")
    region = raw.get("region", data.get("aws_region"))
    if not isinstance(region, str) or not _REGION.match(region):
        problems.append(f"aws_offsite_backups.region: {region!r} is not a region like 'eu-west-1'")
    if "endpoint_url" in raw:
        endpoint = _endpoint(raw["endpoint_url"], "aws_offsite_backups.endpoint_url", problems)
    else:
        endpoint = (
            target.endpoint_url
            if target
            else _endpoint(data.get("aws_endpoint_url"), "aws_endpoint_url", problems)
        )
    encryption = raw.get("encryption", "AES256")
    if encryption not in _ENCRYPTIONS:
        problems.append(
            f"aws_offsite_backups.encryption must be one of {_ENCRYPTIONS}, got {encryption!r}"
        )
    kms_key = _optional_str(raw.get("kms_key_id"), "aws_offsite_backups.kms_key_id", problems)
    return Offsite(str(bucket), str(region), endpoint, str(encryption), kms_key)


def plugin_disagreements(path: Path, target: Target) -> list[str]:
    """Where aws_ec2.yml (which cannot read group_vars) disagrees with aws.yml."""
    from ansible.parsing.dataloader import DataLoader

    plugin = path / PLUGIN_FILE
    if not plugin.is_file():
        return [f"{plugin} is missing: the EC2 inventory reads the instances back from it"]
    config = DataLoader().load_from_file(str(plugin)) or {}
    problems = []
    if config.get("regions") != [target.region]:
        problems.append(
            f"{PLUGIN_FILE}: regions {config.get('regions')!r}, aws.yml: [{target.region}]"
        )
    if (config.get("endpoint_url") or None) != target.endpoint_url:
        problems.append(
            f"{PLUGIN_FILE}: endpoint_url {config.get('endpoint_url')!r}, aws.yml: {target.endpoint_url!r}"
        )
    found = (config.get("filters") or {}).get(f"tag:{ENV_TAG}")
    if found != target.environment:
        problems.append(
            f"{PLUGIN_FILE}: filters.tag:{ENV_TAG} is {found!r}, aws.yml: {target.environment!r}"
        )
    keys = " ".join(str(k.get("key", "")) for k in config.get("keyed_groups") or [])
    if GROUPS_TAG not in keys:
        problems.append(f"{PLUGIN_FILE}: no keyed_groups entry from the {GROUPS_TAG} tag")
    return problems


def _aws_id(value: Any, kind: str, where: str, problems: list[str]) -> str:
    prefix = _ID[kind]
    if not isinstance(value, str) or not re.match(rf"^{prefix}-[0-9a-f]{{8,17}}$", value):
        problems.append(f"{where}: {value!r} is not an {kind} id like {prefix}-0123456789abcdef0")
        return ""
    return value


def _optional_str(value: Any, where: str, problems: list[str]) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or "{{" in value:
        problems.append(f"{where} must be a plain string, got {value!r}")
        return None
    return value


def _endpoint(value: Any, where: str, problems: list[str]) -> str | None:
    if value in (None, ""):
        return None
    match = re.match(r"^https?://([^/:]+)(:\d+)?/?$", value) if isinstance(value, str) else None
    if not match:
        problems.append(f"{where}: {value!r} is not a URL like https://ec2.example.com")
        return None
    return value.rstrip("/")
