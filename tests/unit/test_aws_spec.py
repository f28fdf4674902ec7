"""The AWS declaration (group_vars/all/aws.yml) and its checks: no AWS needed, none contacted."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fetchfleet.aws.firewall import FirewallError, parse, parse_ports
from fetchfleet.aws.spec import REQUIRED_GROUPS, SUITE_GROUPS, SpecError, load_spec, load_target
from fetchfleet.inventory import INVENTORIES

from awsenv import EXAMPLE, write


def copy_example(tmp_path: Path, **changes) -> Path:
    """inventory/aws-example's declaration under tmp_path, with CHANGES to aws.yml."""
    path = tmp_path / "aws-example"
    (path / "group_vars/all").mkdir(parents=True)
    (path / "aws_ec2.yml").write_text((EXAMPLE / "aws_ec2.yml").read_text())
    data = yaml.safe_load((EXAMPLE / "group_vars/all/aws.yml").read_text())
    for key, value in changes.items():
        if key == "tiers":
            for tier, settings in value.items():
                data["aws_tiers"].setdefault(tier, {}).update(settings)
        else:
            data[key] = value
    write(path / "group_vars/all/aws.yml", data)
    return path


def test_the_suite_groups_are_the_lab_inventorys_groups() -> None:
    lab = yaml.safe_load((INVENTORIES / "lab/hosts.yml").read_text())
    assert set(SUITE_GROUPS) == set(lab["all"]["children"])
    assert set(REQUIRED_GROUPS) < set(SUITE_GROUPS)


def test_the_example_environment_is_sound() -> None:
    spec = load_spec("aws-example")
    assert spec.target.environment == "aws-example"
    assert spec.target.endpoint_url is None
    assert {t.name: t.count for t in spec.tiers}["web"] == 2
    assert spec.tier("mq").groups == ("rabbitmq", "solr")
    assert spec.hosts["worker1"].volume_size == 200
    assert spec.hosts["ops1"].instance_type == "t3.small"  # from aws_instance_defaults
    assert spec.tier("lb").public_ip and not spec.tier("web").public_ip
    assert spec.tier("lb").subnet != spec.tier("web").subnet  # a public subnet of its own
    for group in REQUIRED_GROUPS:
        assert spec.members(group), group
    assert spec.offsite is not None and spec.offsite.region == "eu-central-1"


def test_a_bad_declaration_names_every_problem(tmp_path: Path) -> None:
    path = copy_example(
        tmp_path,
        aws_region="Europe",
        aws_vpc_id="vpc-nothex",
        tiers={
            "web": {"groups": ["web", "webservers"]},
            "db": {"count": 0},
            "replica": {"groups": ["db_primary"], "count": 2, "volume_size": 4},
            "worker": {"instance_type": "large", "colour": "blue"},
        },
    )
    with pytest.raises(SpecError) as caught:
        load_spec(str(path))
    text = str(caught.value)
    assert "nothing was sent to AWS" in text
    assert "unknown group 'webservers'" in text
    assert "db_primary has 2 hosts" in text
    assert "aws_region: 'Europe'" in text
    assert "aws_vpc_id: 'vpc-nothex'" in text
    assert "aws_tiers.replica.volume_size" in text
    assert "aws_tiers.worker.instance_type: 'large'" in text
    assert "aws_tiers.worker.colour: unknown key" in text


def test_a_required_group_with_no_host_is_refused(tmp_path: Path) -> None:
    path = copy_example(tmp_path, tiers={"mq": {"count": 0}})
    with pytest.raises(SpecError) as caught:
        load_spec(str(path))
    assert caught.value.problems == [
        f"group rabbitmq needs at least one host, {REQUIRED_GROUPS['rabbitmq']}: tier mq has count 0",
        f"group solr needs at least one host, {REQUIRED_GROUPS['solr']}: tier mq has count 0",
    ]


def test_optional_groups_may_have_no_host(tmp_path: Path) -> None:
    path = copy_example(tmp_path, tiers={"ops": {"count": 0}, "backup": {"count": 0}})
    spec = load_spec(str(path))
    assert spec.members("monitoring") == [] and spec.members("backup") == []


def test_a_production_environment_has_no_lab_seeder(tmp_path: Path) -> None:
    path = copy_example(
        tmp_path, aws_production=True, tiers={"seed": {"groups": ["lab_seeders"], "count": 1}}
    )
    with pytest.raises(SpecError, match="lab_seeders is lab only"):
        load_spec(str(path))


def test_the_ec2_inventory_must_agree_with_the_declaration(tmp_path: Path) -> None:
    path = copy_example(tmp_path, aws_region="eu-north-1", aws_endpoint_url="http://127.0.0.1:9")
    with pytest.raises(SpecError) as caught:
        load_spec(str(path))
    assert caught.value.problems == [
        "aws_ec2.yml: regions ['eu-west-1'], aws.yml: [eu-north-1]",
        "aws_ec2.yml: endpoint_url None, aws.yml: 'http://127.0.0.1:9'",
    ]


def test_status_and_destroy_need_only_the_target(tmp_path: Path) -> None:
    path = copy_example(tmp_path, tiers={"web": {"groups": ["webservers"]}})
    target = load_target(str(path))
    assert (target.environment, target.region, target.production) == (
        "aws-example",
        "eu-west-1",
        False,
    )
    assert target.tags == {"fetchfleet:env": "aws-example"}


def test_an_inventory_without_aws_data_is_not_an_aws_environment() -> None:
    with pytest.raises(SpecError, match="aws_environment is not set: is lab an AWS environment"):
        load_spec("lab")


@pytest.mark.parametrize(
    ("port", "expected"),
    [(22, (22, 22)), ("6881-6889", (6881, 6889)), ("65535", (65535, 65535)), (1, (1, 1))],
)
def test_ports_the_roles_may_write(port, expected) -> None:
    assert parse_ports(port) == expected


@pytest.mark.parametrize("port", [0, 65536, 70000, "10-5", "80-", "http", True, None, "1-70000"])
def test_ports_outside_1_to_65535_are_refused(port) -> None:
    assert parse_ports(port) is None


def test_every_bad_rule_is_named_with_its_host_and_rule_set() -> None:
    spec = load_spec("aws-example")
    collected = {
        "web1": {
            "nginx": [{"port": 70000, "from_groups": ["loadbalancers"]}],
            "ssh": [{"port": 22, "proto": "sctp", "from_networks": ["10.0.0.0/8"]}],
        },
        "db1": {
            "postgresql": [{"port": 5432, "from_groups": ["dbas"], "from_networks": ["10.0.0.1/8"]}]
        },
        "mq1": {"rabbitmq": [{"port": 5672, "from_hosts": ["web9"]}]},
        "ghost1": {"host": []},
    }
    with pytest.raises(FirewallError) as caught:
        parse(spec, collected)
    text = str(caught.value)
    assert "nothing was sent to AWS" in text
    assert "web1: rule of nginx" in text and "port 70000 is not N or 'N-M' within 1-65535" in text
    assert "proto 'sctp'" in text
    assert "from_groups names 'dbas'" in text
    assert "from_networks '10.0.0.1/8' is not an IPv4 CIDR" in text
    assert "from_hosts names 'web9', not a declared host" in text
    assert "ghost1: recorded rules, but is not a declared host" in text
