"""The roles' firewall rules, read by real ansible-playbook runs of site.yml in common's collect
mode (playbooks/firewall-collect.yml): local, check mode, no host contacted, no AWS."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleUndefinedVariable
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from fetchfleet.aws.firewall import FirewallError, Rule, collect
from fetchfleet.aws.security_groups import desired
from fetchfleet.aws.spec import load_spec
from fetchfleet.inventory import REPO
from fetchfleet.settings import role_defaults

from awsenv import EXAMPLE, write

ROLES = REPO / "roles"


def defaults(role: str) -> dict:
    """The role's defaults as a play sees them: templated, with roles/fleet's shared values."""
    raw = {**role_defaults("fleet"), **role_defaults(role)}
    templar = Templar(loader=DataLoader(), variables=raw)
    rendered = {}
    for key, value in raw.items():
        try:
            rendered[key] = templar.template(value)
        except AnsibleUndefinedVariable:  # needs a host's variables: not one the tests read
            rendered[key] = value
    return rendered


def rules_of(rules: dict[str, list[Rule]], host: str, name: str) -> list[tuple]:
    return [
        (r.proto, r.ports, r.from_groups, r.from_networks) for r in rules[host] if r.name == name
    ]


def copy_example(tmp_path: Path) -> Path:
    path = tmp_path / "aws-example"
    shutil.copytree(EXAMPLE, path)
    return path


@pytest.fixture(scope="module")
def example_rules() -> dict[str, list[Rule]]:
    return collect(load_spec("aws-example"))


def test_every_declared_host_gets_sshds_rule_from_the_inventory(example_rules) -> None:
    admin = yaml.safe_load((EXAMPLE / "group_vars/all/common.yml").read_text())[
        "common_ssh_allow_from"
    ]
    spec = load_spec("aws-example")
    assert set(example_rules) == set(spec.hosts)
    for host in spec.hosts:
        assert rules_of(example_rules, host, "ssh") == [("tcp", (22, 22), (), tuple(admin))], host


def test_the_rules_are_the_roles_own_data(example_rules) -> None:
    solr = defaults("solr")["solr_firewall_allow"]
    assert rules_of(example_rules, "mq1", "solr") == [
        ("tcp", (r["port"], r["port"]), tuple(r["from_groups"]), ()) for r in solr
    ]
    amqp = defaults("rabbitmq")["rabbitmq_amqp_port"]
    assert rules_of(example_rules, "mq1", "rabbitmq") == [
        ("tcp", (amqp, amqp), ("web", "workers"), ())
    ]
    nginx = defaults("nginx")
    port = nginx["nginx_lb_port"]
    assert rules_of(example_rules, "lb1", "nginx") == [
        ("tcp", (port, port), (), tuple(nginx["nginx_lb_allow_networks"]))
    ]
    assert rules_of(example_rules, "web1", "nginx") == [
        ("tcp", (nginx["nginx_app_port"],) * 2, tuple(nginx["nginx_app_allow_groups"]), ())
    ]
    pg = defaults("postgresql")
    assert rules_of(example_rules, "db1", "postgresql") == [
        (
            "tcp",
            (5432, 5432),
            ("db_replicas", *pg["postgresql_backup_groups"], *pg["postgresql_monitor_groups"]),
            (),
        ),
        ("tcp", (pg["postgresql_pgbouncer_port"],) * 2, tuple(pg["postgresql_app_groups"]), ()),
    ]
    # A host runs only the roles of its groups: no database rules on a web host, and so on.
    assert {r.name for r in example_rules["web1"]} == {"ssh", "nginx"}
    assert {r.name for r in example_rules["worker1"]} == {"ssh", "nginx", "transmission"}
    # jenkins.yml runs apart from site.yml; its rule is collected all the same.
    admins = yaml.safe_load((EXAMPLE / "group_vars/jenkins/jenkins.yml").read_text())
    port = defaults("jenkins")["jenkins_nginx_port"]
    assert rules_of(example_rules, "ops1", "jenkins") == [
        ("tcp", (port, port), (), tuple(admins["jenkins_admin_networks"]))
    ]


def test_hosts_of_one_tier_with_different_rules_are_refused(tmp_path: Path) -> None:
    path = copy_example(tmp_path)
    write(
        path / "host_vars/web2/nginx.yml",
        {"nginx_firewall_extra": [{"port": 9100, "from_groups": ["monitoring"]}]},
    )
    spec = load_spec(str(path))
    rules = collect(spec)
    assert rules_of(rules, "web2", "nginx")[-1] == ("tcp", (9100, 9100), ("monitoring",), ())
    with pytest.raises(FirewallError) as caught:
        desired(spec, rules, {})
    text = str(caught.value)
    assert "tier web: web2 and web1 have different firewall rules" in text
    assert "tcp 9100 from fetchfleet-aws-example-ops" in text


def test_a_failing_run_names_the_task_and_the_command_to_look_closer(tmp_path: Path) -> None:
    path = copy_example(tmp_path)
    write(path / "group_vars/web/broken.yml", {"nginx_firewall_extra": "{{ no_such_variable }}"})
    with pytest.raises(FirewallError) as caught:
        collect(load_spec(str(path)))
    text = str(caught.value)
    assert "reading the roles' firewall rules failed" in text
    assert "TASK [Open the sites' ports through common's firewall]" in text
    assert "fatal: [web1]: FAILED!" in text and "fatal: [web2]: FAILED!" in text
    assert "UndefinedMarker" in text  # Ansible's own message
    command = text.split("look closer (from the repository): ", 1)[1]
    assert command.startswith("ansible-playbook -i /") and "firewall-collect.yml --check" in command
    inventory = Path(command.split()[2])
    assert (inventory / "hosts.yml").is_file(), "the inventory of the failed run is kept"
    shutil.rmtree(inventory.parent)


def test_collect_mode_refuses_a_real_converge(tmp_path: Path) -> None:
    """Set in an inventory by mistake, collect mode would leave hosts without firewall rules."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Firewall entry point in collect mode, not in check mode",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Include the entry point",
                            "ansible.builtin.include_role": {
                                "name": "common",
                                "tasks_from": "firewall",
                            },
                            "vars": {
                                "common_firewall_name": "probe",
                                "common_firewall_allow": [
                                    {"port": 1, "from_networks": ["192.0.2.0/24"]}
                                ],
                                "common_firewall_collect": True,
                            },
                        }
                    ],
                }
            ]
        )
    )
    tool = Path(sys.executable).parent / "ansible-playbook"
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(ROLES),
    }
    proc = subprocess.run(
        [str(tool), "-i", "localhost,", "-c", "local", str(playbook)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "common_firewall_collect only records rules for fetchfleet.aws" in proc.stdout
    assert not Path("/etc/nftables.d/probe.nft").exists()
