"""What EC2 has for an environment (instances and security groups carrying its tag), read with
boto3. Credentials come from boto3's usual chain: AWS_PROFILE or AWS_ACCESS_KEY_ID/…, ~/.aws,
or the instance role of the machine `fab` runs on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fetchfleet.aws import AwsError
from fetchfleet.aws.security_groups import Permission, from_aws
from fetchfleet.aws.spec import ENV_TAG, GROUPS_TAG, TIER_TAG, Target

# Instances in these states are gone or going: not part of the environment any more.
GONE = ("shutting-down", "terminated")


def client(service: str, region: str, endpoint_url: str | None, s3: dict | None = None) -> Any:
    """A boto3 client from the usual credential chain, with standard retries."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": 6}, user_agent_extra="fetchfleet", s3=s3
    )
    session = boto3.session.Session(region_name=region)
    return session.client(service, endpoint_url=endpoint_url, config=config)


def ec2_client(target: Target) -> Any:
    return client("ec2", target.region, target.endpoint_url)


@contextlib.contextmanager
def calling(what: str, target: Target) -> Iterator[None]:
    """Turn boto3's errors into an AwsError that says what was being done, where, and what next."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    where = f"{target.environment} ({target.region}{', ' + target.endpoint_url if target.endpoint_url else ''})"
    try:
        yield
    except NoCredentialsError as err:
        raise AwsError(
            f"{what}: no AWS credentials for {where}\n  -> set AWS_PROFILE (or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY), or run on a machine with an instance role; check with "
            "`aws sts get-caller-identity`"
        ) from err
    except ClientError as err:
        info = err.response.get("Error", {})
        raise AwsError(
            f"{what}: {info.get('Code', '?')}: {info.get('Message', err)} [{where}]\n"
            f"  -> look closer: aws --region {target.region} ec2 ... (operation {err.operation_name})"
        ) from err
    except BotoCoreError as err:
        raise AwsError(f"{what}: {err} [{where}]") from err


@dataclass(frozen=True)
class Instance:
    id: str
    name: str
    tier: str
    groups: tuple[str, ...]
    state: str
    instance_type: str
    image: str
    subnet: str
    private_ip: str
    public_ip: str
    security_groups: tuple[str, ...]  # ids, of the primary network interface
    interface: str  # the primary network interface
    volume_id: str
    volume_size: int
    launched: datetime
    tags: dict[str, str] = field(compare=False, repr=False)


@dataclass(frozen=True)
class ActualRule:
    id: str
    permission: Permission
    description: str


@dataclass(frozen=True)
class SecurityGroup:
    id: str
    name: str
    vpc: str
    tags: dict[str, str]
    rules: tuple[ActualRule, ...]


@dataclass(frozen=True)
class Actual:
    instances: tuple[Instance, ...]
    groups: dict[str, SecurityGroup]  # by name

    def ids(self) -> dict[str, str]:
        return {name: g.id for name, g in self.groups.items()}


def snapshot(ec2: Any, target: Target) -> Actual:
    """The environment's instances (not terminated) and security groups, with their rules."""
    env_filter = [{"Name": f"tag:{ENV_TAG}", "Values": [target.environment]}]
    with calling("reading the environment's instances", target):
        reservations = _pages(ec2, "describe_instances", "Reservations", Filters=env_filter)
        raw = [i for r in reservations for i in r["Instances"] if i["State"]["Name"] not in GONE]
        volumes = {}
        volume_ids = [_root_volume(i) for i in raw if _root_volume(i)]
        if volume_ids:
            for volume in _pages(ec2, "describe_volumes", "Volumes", VolumeIds=volume_ids):
                volumes[volume["VolumeId"]] = volume["Size"]
    with calling("reading the environment's security groups", target):
        groups = _pages(ec2, "describe_security_groups", "SecurityGroups", Filters=env_filter)
        names = {g["GroupId"]: g["GroupName"] for g in groups}
        rules: dict[str, list[ActualRule]] = {g["GroupId"]: [] for g in groups}
        if groups:
            found = _pages(
                ec2,
                "describe_security_group_rules",
                "SecurityGroupRules",
                Filters=[{"Name": "group-id", "Values": list(names)}],
            )
            for rule in found:
                if not rule["IsEgress"] and rule["GroupId"] in rules:
                    rules[rule["GroupId"]].append(
                        ActualRule(
                            rule["SecurityGroupRuleId"],
                            from_aws(rule, names),
                            rule.get("Description", ""),
                        )
                    )
    instances = tuple(
        sorted((_instance(i, volumes) for i in raw), key=lambda i: (i.name, i.launched))
    )
    return Actual(
        instances,
        {
            g["GroupName"]: SecurityGroup(
                g["GroupId"],
                g["GroupName"],
                g.get("VpcId", ""),
                _tags(g),
                tuple(rules[g["GroupId"]]),
            )
            for g in groups
        },
    )


def shutting_down(ec2: Any, target: Target) -> list[str]:
    """The environment's instances still terminating (their security groups cannot go yet)."""
    filters = [
        {"Name": f"tag:{ENV_TAG}", "Values": [target.environment]},
        {"Name": "instance-state-name", "Values": ["shutting-down"]},
    ]
    found = _pages(ec2, "describe_instances", "Reservations", Filters=filters)
    return [i["InstanceId"] for r in found for i in r["Instances"]]


def _instance(raw: dict[str, Any], volumes: dict[str, int]) -> Instance:
    tags = _tags(raw)
    volume = _root_volume(raw)
    # An instance's security groups are its primary interface's (the instance-level list is
    # empty for an instance launched with an interface specification, e.g. a public address).
    primary = next(
        (
            n
            for n in raw.get("NetworkInterfaces", [])
            if n.get("Attachment", {}).get("DeviceIndex") == 0
        ),
        {},
    )
    groups = primary.get("Groups") or raw.get("SecurityGroups", [])
    return Instance(
        id=raw["InstanceId"],
        name=tags.get("Name", raw["InstanceId"]),
        tier=tags.get(TIER_TAG, ""),
        groups=tuple(g for g in tags.get(GROUPS_TAG, "").split(",") if g),
        state=raw["State"]["Name"],
        instance_type=raw["InstanceType"],
        image=raw.get("ImageId", ""),
        subnet=raw.get("SubnetId", ""),
        private_ip=raw.get("PrivateIpAddress", ""),
        public_ip=raw.get("PublicIpAddress", ""),
        security_groups=tuple(sorted(g["GroupId"] for g in groups)),
        interface=primary.get("NetworkInterfaceId", ""),
        volume_id=volume,
        volume_size=volumes.get(volume, 0),
        launched=raw["LaunchTime"],
        tags=tags,
    )


def _root_volume(raw: dict[str, Any]) -> str:
    root = raw.get("RootDeviceName")
    for mapping in raw.get("BlockDeviceMappings", []):
        if mapping.get("DeviceName") == root and "Ebs" in mapping:
            return mapping["Ebs"]["VolumeId"]
    return ""


def _tags(raw: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in raw.get("Tags", [])}


def _pages(ec2: Any, operation: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in ec2.get_paginator(operation).paginate(**kwargs):
        items.extend(page[key])
    return items
