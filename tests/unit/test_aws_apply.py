"""An environment applied once to the local AWS (moto's server, real boto3), then read back the
way the suite reads it: EC2 itself, `ansible-inventory` with the aws_ec2 plugin, load_fleet,
`ansible-playbook --list-hosts`, `fab aws.*`. Tests run in file order; destroy comes last."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from fetchfleet.aws.apply import ApplyReport, apply
from fetchfleet.aws.destroy import DestroyRefused, destroy
from fetchfleet.aws.plan import instance_tags, plan
from fetchfleet.aws.security_groups import group_name
from fetchfleet.aws.spec import LAB_ONLY_GROUPS, SUITE_GROUPS, Spec, load_spec
from fetchfleet.aws.status import status
from fetchfleet.inventory import REPO, load_fleet

from awsenv import aws_data, ec2, make_env, set_vars

ENV = "aws-test"
# A rule "from host" (a monitoring exporter on the database, for ops1): becomes ops1's address.
EXPORTER = {"common_firewall_allow": [{"port": 9187, "from_hosts": ["ops1"]}]}


@dataclass
class Applied:
    path: Path
    spec: Spec
    report: ApplyReport
    progress: list[str]

    @property
    def env(self) -> str:
        return str(self.path)


@pytest.fixture(scope="module")
def applied(moto_server, aws_credentials, tmp_path_factory) -> Applied:
    moto_server.reset()
    path = make_env(
        moto_server.url,
        tmp_path_factory.mktemp("apply"),
        ENV,
        group_vars={"db_primary/exporter.yml": EXPORTER},
    )
    progress: list[str] = []
    report = apply(str(path), out=progress.append)
    return Applied(path, load_spec(str(path)), report, progress)


def instances(url: str) -> dict[str, dict]:
    found = ec2(url).describe_instances(Filters=[{"Name": "tag:fetchfleet:env", "Values": [ENV]}])
    live = [
        i
        for r in found["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    return {next(t["Value"] for t in i["Tags"] if t["Key"] == "Name"): i for i in live}


def security_groups(url: str) -> dict[str, dict]:
    found = ec2(url).describe_security_groups(
        Filters=[{"Name": "tag:fetchfleet:env", "Values": [ENV]}]
    )
    return {g["GroupName"]: g for g in found["SecurityGroups"]}


def test_apply_launches_every_declared_instance_as_declared(applied, moto_server) -> None:
    found = instances(moto_server.url)
    assert sorted(found) == sorted(applied.spec.hosts)
    client = ec2(moto_server.url)
    for host, tier in applied.spec.hosts.items():
        instance = found[host]
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags["fetchfleet:groups"] == ",".join(tier.groups), host
        assert tags["fetchfleet:tier"] == tier.name
        assert instance["InstanceType"] == tier.instance_type, host
        assert instance["ImageId"] == tier.image and instance["SubnetId"] == tier.subnet
        assert instance["MetadataOptions"]["HttpTokens"] == "required"
        volume_id = instance["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
        volume = client.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
        assert (volume["Size"], volume["VolumeType"], volume["Encrypted"]) == (
            tier.volume_size,
            "gp3",
            True,
        )
        assert bool(instance.get("PublicIpAddress")) == tier.public_ip, host
    assert applied.report.changed
    assert f"{ENV}: 9 to create, 0 to terminate" in applied.report.summary
    assert any("EC2 matches the declaration" in line for line in applied.progress)


def test_each_instance_is_in_its_tiers_security_group(applied, moto_server) -> None:
    groups = security_groups(moto_server.url)
    assert sorted(groups) == sorted(group_name(ENV, t.name) for t in applied.spec.tiers)
    for host, instance in instances(moto_server.url).items():
        attached = [g["GroupName"] for n in instance["NetworkInterfaces"] for g in n["Groups"]]
        assert attached == [group_name(ENV, applied.spec.hosts[host].name)], host


def test_the_security_groups_rules_are_the_roles_firewall_rules(applied, moto_server) -> None:
    """Per host, what its rules let in (members of a group, networks, hosts), against what its
    security group lets in; nothing more, nothing less."""
    spec = applied.spec
    rules = (
        applied.report.rules
    )  # what Ansible recorded (test_aws_firewall checks it against the roles)
    found = instances(moto_server.url)
    groups = security_groups(moto_server.url)
    name_of = {g["GroupId"]: name for name, g in groups.items()}
    for tier in spec.tiers:
        sg = group_name(ENV, tier.name)
        expected = set()
        for host in tier.hosts:
            for rule in rules[host]:
                sources = {
                    f"sg:{group_name(ENV, spec.hosts[m].name)}"
                    for g in rule.from_groups
                    for m in spec.members(g)
                }
                sources |= {f"cidr:{found[h]['PrivateIpAddress']}/32" for h in rule.from_hosts}
                sources |= {f"cidr:{n}" for n in rule.from_networks}
                expected |= {(rule.proto, *rule.ports, s) for s in sources}
        actual = set()
        for perm in groups[sg]["IpPermissions"]:
            for pair in perm["UserIdGroupPairs"]:
                actual.add(
                    (
                        perm["IpProtocol"],
                        perm["FromPort"],
                        perm["ToPort"],
                        f"sg:{name_of[pair['GroupId']]}",
                    )
                )
            for cidr in perm["IpRanges"]:
                actual.add(
                    (perm["IpProtocol"], perm["FromPort"], perm["ToPort"], f"cidr:{cidr['CidrIp']}")
                )
        assert actual == expected, sg
    db = groups[group_name(ENV, "db")]["IpPermissions"]
    ops1 = found["ops1"]["PrivateIpAddress"]
    assert any(
        p["FromPort"] == 9187 and p["IpRanges"] == [{"CidrIp": f"{ops1}/32", "Description": "host"}]
        for p in db
    )


def test_the_ec2_inventory_has_the_suite_groups(applied, moto_server) -> None:
    tool = Path(sys.executable).parent / "ansible-inventory"
    proc = subprocess.run(
        [str(tool), "-i", applied.env, "--graph"],
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
        capture_output=True,
        text=True,
        check=True,
    )
    graph: dict[str, set[str]] = {}
    group = ""
    for line in proc.stdout.splitlines():
        if m := re.match(r"^\s*\|--@(\w+):$", line):
            group = m[1]
            graph[group] = set()
        elif m := re.match(r"^\s*\|\s*\|--(\S+)$", line):
            graph[group].add(m[1])
    for group in SUITE_GROUPS:  # test_aws_spec.py checks them against inventory/lab's
        if group not in LAB_ONLY_GROUPS:
            assert graph.get(group) == set(applied.spec.members(group)), group
    assert "lab_seeders" not in graph
    fleet = load_fleet(applied.env)
    found = instances(moto_server.url)
    assert {h.name: h.address for h in fleet.hosts} == {
        n: i["PrivateIpAddress"] for n, i in found.items()
    }
    assert [h.name for h in fleet.group("solr")] == ["mq1"] and "rabbitmq" in fleet.host(
        "mq1"
    ).groups


def test_site_yml_runs_on_the_ec2_hosts_unchanged(applied) -> None:
    tool = Path(sys.executable).parent / "ansible-playbook"
    proc = subprocess.run(
        [str(tool), "-i", applied.env, str(REPO / "playbooks/site.yml"), "--list-hosts"],
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
        capture_output=True,
        text=True,
        check=True,
    )
    plays = {}
    for block in proc.stdout.split("play #")[1:]:
        name = re.match(r"\d+ \([^)]*\): (.*?)\s+TAGS", block)[1]
        plays[name] = set(re.findall(r"^\s{6}(\S+)$", block, re.M))
    assert plays["Baseline every host"] == set(applied.spec.hosts)
    assert plays["PostgreSQL primary, streaming replicas and pgbouncer"] == {"db1", "replica1"}
    assert plays["Web tier - load balancers, web hosts, workers"] == {
        "lb1",
        "web1",
        "web2",
        "worker1",
    }
    assert plays["Lab seeder"] == set()


def test_a_second_apply_changes_nothing_and_says_so(applied, moto_server) -> None:
    moto_server.post("/moto-api/recorder/reset-recording")
    fab = Path(sys.executable).parent / "fab"
    proc = subprocess.run(
        [str(fab), "aws.apply", applied.env], cwd=REPO, capture_output=True, text=True, check=True
    )
    # 40 rules: 31 of the services, and the log server's port from each of the 9 hosts (roles/logs).
    assert (
        f"{ENV}: nothing to change: 9 instances, 8 security groups and 40 rules match the declaration"
        in proc.stdout
    )
    actions = moto_server.actions()
    assert actions and all(a.startswith("Describe") for a in actions), actions


def test_status_shows_every_instance_and_the_bucket(applied, moto_server) -> None:
    result = status(applied.env)
    assert [r["host"] for r in result.rows] == sorted(applied.spec.hosts)
    assert {r["state"] for r in result.rows} == {"running"} and {
        r["declared"] for r in result.rows
    } == {"yes"}
    assert any("0 missing, 0 not declared, 8 security group(s)" in n for n in result.notes)
    assert any(
        "offsite backups: s3://fetchfleet-aws-test-offsite not usable" in n for n in result.notes
    )


def test_a_changed_role_rule_changes_the_plan(applied) -> None:
    """The broker's port, changed where the role reads it, reaches the security group."""
    port = applied.path / "group_vars/rabbitmq/port.yml"
    set_vars(applied.path, "group_vars/rabbitmq/port.yml", {"rabbitmq_amqp_port": 5673})
    try:
        the_plan, _ = plan(applied.env)
    finally:
        port.unlink()
    mq = group_name(ENV, "mq")
    added = sorted(r.text("allow") for r in the_plan.rules_add)
    removed = sorted(r.text("revoke") for r in the_plan.rules_remove)
    assert added == [
        f"allow    {mq}: tcp 5673 from {group_name(ENV, 'web')}  [rabbitmq]",
        f"allow    {mq}: tcp 5673 from {group_name(ENV, 'worker')}  [rabbitmq]",
    ]
    assert [r.split("  [")[0] for r in removed] == [
        f"revoke   {mq}: tcp 5672 from {group_name(ENV, 'web')}",
        f"revoke   {mq}: tcp 5672 from {group_name(ENV, 'worker')}",
    ]
    assert the_plan.changes == 4


def test_destroy_refuses_without_the_typed_name(applied, moto_server) -> None:
    moto_server.post("/moto-api/recorder/reset-recording")
    with pytest.raises(
        DestroyRefused, match="the confirmation 'aws-tset' is not the environment's name"
    ):
        destroy(applied.env, confirm="aws-tset")
    fab = Path(sys.executable).parent / "fab"
    proc = subprocess.run(
        [str(fab), "aws.destroy", applied.env, "--confirm", "yes"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 3 and "nothing was destroyed" in proc.stderr
    assert moto_server.actions() == []
    assert len(instances(moto_server.url)) == 9


def test_destroy_refuses_a_production_environment_without_the_flag(applied, moto_server) -> None:
    data = aws_data(applied.path)
    set_vars(applied.path, "group_vars/all/aws.yml", {**data, "aws_production": True})
    moto_server.post("/moto-api/recorder/reset-recording")
    with pytest.raises(DestroyRefused, match="is declared production"):
        destroy(applied.env, confirm=ENV)
    assert moto_server.actions() == []
    production = load_spec(applied.env)
    assert (
        instance_tags(production, "db1", production.tier("db"))["fetchfleet:production"] == "true"
    )
    # The declaration says otherwise now, but a resource is tagged production: still refused.
    set_vars(applied.path, "group_vars/all/aws.yml", data)
    db1 = instances(moto_server.url)["db1"]["InstanceId"]
    ec2(moto_server.url).create_tags(
        Resources=[db1], Tags=[{"Key": "fetchfleet:production", "Value": "true"}]
    )
    with pytest.raises(DestroyRefused, match=r"has resources tagged production: db1"):
        destroy(applied.env, confirm=ENV)
    assert len(instances(moto_server.url)) == 9


def test_destroy_removes_instances_and_security_groups_not_the_bucket(applied, moto_server) -> None:
    s3 = __import__("boto3").client("s3", endpoint_url=moto_server.url, region_name="eu-west-1")
    s3.create_bucket(
        Bucket="fetchfleet-aws-test-offsite",
        CreateBucketConfiguration={"LocationConstraint": "eu-west-1"},
    )
    progress: list[str] = []
    report = destroy(applied.env, confirm=ENV, production=True, out=progress.append)
    assert instances(moto_server.url) == {}
    assert security_groups(moto_server.url) == {}
    assert len(report.rows) == 9 + 8
    assert (
        s3.head_bucket(Bucket="fetchfleet-aws-test-offsite")["ResponseMetadata"]["HTTPStatusCode"]
        == 200
    )
    assert "the offsite backups' bucket is kept" in progress[-1]
