"""Changing an environment on the local AWS (moto's server, real boto3), and refusing bad data
before any API call (moto's request log proves none was made)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fetchfleet.aws import AwsError
from fetchfleet.aws.apply import apply
from fetchfleet.aws.firewall import FirewallError
from fetchfleet.aws.plan import plan
from fetchfleet.aws.spec import SpecError

from awsenv import aws_data, ec2, make_env, set_vars

ENV = "aws-change"


def live(url: str) -> dict[str, dict]:
    found = ec2(url).describe_instances(Filters=[{"Name": "tag:fetchfleet:env", "Values": [ENV]}])
    running = [
        i
        for r in found["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    return {next(t["Value"] for t in i["Tags"] if t["Key"] == "Name"): i for i in running}


def declare(path: Path, tier: str, **settings) -> None:
    data = aws_data(path)
    data["aws_tiers"][tier].update(settings)
    set_vars(path, "group_vars/all/aws.yml", data)


def changes(progress: list[str]) -> list[str]:
    """The plan's lines apply printed (create/terminate/change), without the timestamps."""
    lines = [line.split("] ", 1)[1] for line in progress]
    return [line for line in lines if line.startswith(("create   ", "terminate", "change   "))]


def test_a_running_environment_changes_as_its_declaration_does(moto, tmp_path: Path) -> None:
    """One environment through five applies (each a real plan: the roles' rules are read each time)."""
    path = make_env(moto.url, tmp_path, ENV)
    apply(str(path), out=lambda line: None)
    before = {name: i["InstanceId"] for name, i in live(moto.url).items()}
    assert sorted(n for n in before if n.startswith("web")) == ["web1", "web2"]

    # One more web host, a bigger type for the web tier, a bigger volume for the worker.
    declare(path, "web", count=3, instance_type="t3.large")
    declare(path, "worker", volume_size=250)
    moto.post("/moto-api/recorder/reset-recording")
    with pytest.raises(
        AwsError, match=r"web1 \(t3.medium -> t3.large\), web2 .*nothing was changed"
    ):
        apply(str(path), out=lambda line: None)
    assert all(a.startswith("Describe") for a in moto.actions()), moto.actions()

    progress: list[str] = []
    apply(str(path), restart=True, out=progress.append)
    data = aws_data(path)
    assert changes(progress) == [
        f"create   web3: t3.large, {data['aws_instance_defaults']['image']}, 20 GiB, "
        f"{data['aws_subnet_id']}, groups web",
        "change   web1: instance_type t3.medium -> t3.large (stop, change, start: needs --restart)",
        "change   web2: instance_type t3.medium -> t3.large (stop, change, start: needs --restart)",
        "change   worker1: volume 200 GiB -> 250 GiB",
    ]
    found = live(moto.url)
    after = {name: i["InstanceId"] for name, i in found.items()}
    assert set(after) == set(before) | {"web3"}
    assert all(after[name] == ident for name, ident in before.items()), "an instance was replaced"
    assert {found[h]["InstanceType"] for h in ("web1", "web2", "web3")} == {"t3.large"}
    volume = found["worker1"]["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    assert ec2(moto.url).describe_volumes(VolumeIds=[volume])["Volumes"][0]["Size"] == 250

    # Down to one web host: the highest numbers go. A volume cannot shrink, an image cannot
    # change in place: both are reported as drift, never done.
    images = [i["ImageId"] for i in ec2(moto.url).describe_images(Owners=["amazon"])["Images"]]
    declare(path, "web", count=1)
    declare(path, "worker", volume_size=100, image=images[1])
    progress = []
    apply(str(path), out=progress.append)
    assert sorted(changes(progress)) == [
        f"terminate web2 ({after['web2']}): not declared (count or tier removed)",
        f"terminate web3 ({after['web3']}): not declared (count or tier removed)",
    ]
    drift = [line.split("] ", 1)[1] for line in progress if "] drift" in line]
    assert drift == [
        "drift    worker1: volume is 250 GiB, declared 100: EBS volumes do not shrink (not changed by apply)",
        f"drift    worker1: runs image {images[0]}, declared {images[1]}: apply --replace worker1 to change (not changed by apply)",
    ]
    final = {name: i["InstanceId"] for name, i in live(moto.url).items()}
    assert set(final) == set(before) - {"web2"}
    assert final["web1"] == before["web1"] and final["worker1"] == before["worker1"]

    # Replacing the worker is how the new image and the smaller volume reach it.
    progress = []
    apply(str(path), replace=("worker1",), out=progress.append)
    assert changes(progress)[1] == f"terminate worker1 ({before['worker1']}): replaced (--replace)"
    worker = live(moto.url)["worker1"]
    assert worker["InstanceId"] != before["worker1"] and worker["ImageId"] == images[1]
    volume = worker["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    assert ec2(moto.url).describe_volumes(VolumeIds=[volume])["Volumes"][0]["Size"] == 100
    with pytest.raises(AwsError, match="--replace worker9: not declared hosts"):
        apply(str(path), replace=("worker9",))


@pytest.mark.parametrize(
    ("tier", "settings", "message"),
    [
        ("web", {"groups": ["web", "frontends"]}, "unknown group 'frontends'"),
        ("db", {"count": 0}, "group db_primary needs at least one host"),
    ],
)
def test_bad_declarations_are_refused_before_any_api_call(
    moto, tmp_path, tier, settings, message
) -> None:
    path = make_env(moto.url, tmp_path, ENV)
    declare(path, tier, **settings)
    moto.post("/moto-api/recorder/reset-recording")
    with pytest.raises(SpecError, match=message):
        apply(str(path))
    with pytest.raises(SpecError, match=message):
        plan(str(path))
    assert moto.actions() == []


def test_a_port_outside_1_to_65535_is_refused_before_any_api_call(moto, tmp_path: Path) -> None:
    extra = {"solr_firewall_extra": [{"port": 70000, "from_groups": ["web"]}]}
    path = make_env(moto.url, tmp_path, ENV, group_vars={"solr/extra.yml": extra})
    moto.post("/moto-api/recorder/reset-recording")
    with pytest.raises(
        FirewallError, match=r"mq1: rule of solr .* port 70000 is not N or 'N-M' within 1-65535"
    ):
        apply(str(path))
    assert moto.actions() == []


def test_a_subnet_outside_the_vpc_is_refused_before_any_change(moto, tmp_path: Path) -> None:
    path = make_env(moto.url, tmp_path, ENV)
    other = ec2(moto.url).create_vpc(CidrBlock="10.251.0.0/16")["Vpc"]["VpcId"]
    stray = ec2(moto.url).create_subnet(VpcId=other, CidrBlock="10.251.1.0/24")["Subnet"][
        "SubnetId"
    ]
    declare(path, "worker", subnet=stray)
    moto.post("/moto-api/recorder/reset-recording")
    with pytest.raises(AwsError, match=rf"subnets outside aws_vpc_id .*: {stray} \(in {other}\)"):
        apply(str(path))
    assert all(a.startswith("Describe") for a in moto.actions()), moto.actions()
