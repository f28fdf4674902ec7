"""A throw-away copy of inventory/aws-example pointed at the local AWS (tests/unit/conftest.py)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import boto3
import yaml

from fetchfleet.inventory import INVENTORIES

REGION = "eu-west-1"
EXAMPLE = INVENTORIES / "aws-example"


def ec2(url: str) -> Any:
    return boto3.client("ec2", endpoint_url=url, region_name=REGION)


def make_env(
    url: str,
    root: Path,
    name: str = "aws-test",
    tiers: dict[str, dict] | None = None,
    group_vars: dict[str, Any] | None = None,
    **data: Any,
) -> Path:
    """inventory/aws-example copied under ROOT/NAME, with a VPC, subnets and image of the local AWS.

    tiers replaces aws_tiers; group_vars maps a file under group_vars/ ("rabbitmq/x.yml") to its
    content; data sets aws.yml keys (aws_production=True, …).
    """
    client = ec2(url)
    vpc = client.create_vpc(CidrBlock="10.250.0.0/16")["Vpc"]["VpcId"]
    subnet = client.create_subnet(VpcId=vpc, CidrBlock="10.250.1.0/24")["Subnet"]["SubnetId"]
    public = client.create_subnet(VpcId=vpc, CidrBlock="10.250.0.0/24")["Subnet"]["SubnetId"]
    image = client.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    path = root / name
    shutil.copytree(EXAMPLE, path)
    aws = yaml.safe_load((EXAMPLE / "group_vars/all/aws.yml").read_text())
    aws.update(
        aws_environment=name,
        aws_endpoint_url=url,
        aws_vpc_id=vpc,
        aws_subnet_id=subnet,
        aws_key_name="",
    )
    aws["aws_instance_defaults"]["image"] = image
    aws["aws_tiers"]["lb"]["subnet"] = public
    aws["aws_offsite_backups"] = {"bucket": f"fetchfleet-{name}-offsite", "region": REGION}
    if tiers is not None:
        aws["aws_tiers"] = tiers
    aws.update(data)
    write(path / "group_vars/all/aws.yml", aws)
    plugin = yaml.safe_load((EXAMPLE / "aws_ec2.yml").read_text())
    plugin["endpoint_url"] = url
    plugin["filters"]["tag:fetchfleet:env"] = name
    write(path / "aws_ec2.yml", plugin)
    for relative, content in (group_vars or {}).items():
        write(path / "group_vars" / relative, content)
    return path


def set_vars(path: Path, relative: str, content: Any) -> None:
    """Write (or replace) a file of the environment, e.g. group_vars/all/aws.yml."""
    write(path / relative, content)


def aws_data(path: Path) -> dict[str, Any]:
    return yaml.safe_load((path / "group_vars/all/aws.yml").read_text())


def write(path: Path, content: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("---\n" + yaml.safe_dump(content, sort_keys=False))
