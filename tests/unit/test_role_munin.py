"""roles/munin's templates, rendered by Ansible for an inventory shaped like the lab's, then read
by munin's own parsers (Debian's 2.0.73, unpacked by `make setup`) with the role's `validate`
commands, and checked for what the design promises: munin-node lets only the masters in, each
host runs the plugins of its groups, munin.conf lists every host with the pager as its contact.
The role itself converges only in the lab (see monitoring/README.md for the lab tests)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from role_render import run_play

ROLE = REPO / "roles" / "munin"
MUNIN = Path(os.environ.get("FETCHFLEET_MUNIN_ROOT", "/var/lib/fetchfleet/munin-2.0.73-1"))
HOSTS = {
    "lb1": ("10.77.0.11", ["loadbalancers"]),
    "web1": ("10.77.0.21", ["web"]),
    "web2": ("10.77.0.22", ["web"]),
    "worker1": ("10.77.0.31", ["workers"]),
    "db1": ("10.77.0.41", ["db_primary"]),
    "db2": ("10.77.0.42", ["db_replicas"]),
    "mq1": ("10.77.0.51", ["rabbitmq", "solr"]),
    "ops1": ("10.77.0.61", ["monitoring", "jenkins"]),
}
NODE_FILES = {
    "munin-node.conf": "etc/munin/munin-node.conf.j2",
    "plugin-conf": "etc/munin/plugin-conf.d/fetchfleet.j2",
}
MASTER_FILES = {
    "munin.conf": "etc/munin/munin.conf.j2",
    "pager.json": "etc/fetchfleet/pager.json.j2",
    "update.service": "etc/systemd/system/fetchfleet-munin-update.service.j2",
    "update.timer": "etc/systemd/system/fetchfleet-munin-update.timer.j2",
    "site.conf": "etc/nginx/sites-available/munin.conf.j2",
    "fetchfleet-pager": "usr/local/bin/fetchfleet-pager.j2",
}


def task_validate(tasks_file: str, dest: str) -> str:
    """The `validate` command the role runs before installing `dest`."""
    for task in yaml.safe_load((ROLE / "tasks" / tasks_file).read_text()):
        template = task.get("ansible.builtin.template", {})
        if template.get("dest") == dest:
            return " ".join(template["validate"].split())
    raise AssertionError(f"no template task for {dest} in {tasks_file}")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("munin-role")
    groups: dict = {}
    for host, (_, member_of) in HOSTS.items():
        for group in member_of:
            groups.setdefault(group, {"hosts": {}})["hosts"][host] = None
    inventory = {
        "all": {
            "hosts": {h: {"ansible_host": a} for h, (a, _) in HOSTS.items()},
            "children": groups,
        }
    }
    (out / "hosts.yml").write_text(yaml.safe_dump(inventory))
    render = [
        {
            "name": f"Render {key}",
            "ansible.builtin.template": {
                "src": f"{ROLE}/templates/{src}",
                "dest": f"{out}/{{{{ inventory_hostname }}}}/{key}",
                "mode": "0644",
            },
        }
        for key, src in NODE_FILES.items()
    ] + [
        {
            "name": f"Render {key}",
            "ansible.builtin.template": {
                "src": f"{ROLE}/templates/{src}",
                "dest": f"{out}/{{{{ inventory_hostname }}}}/{key}",
                "mode": "0644",
            },
            "when": "inventory_hostname in groups['monitoring']",
        }
        for key, src in MASTER_FILES.items()
    ]
    play = [
        {
            "name": "Render roles/munin's templates",
            "hosts": "all",
            "gather_facts": False,
            "connection": "local",
            "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
            "vars": {"role_path": str(ROLE), "ansible_python_interpreter": sys.executable},
            "tasks": [
                {
                    "name": "Make the host's directory",
                    "ansible.builtin.file": {
                        "path": f"{out}/{{{{ inventory_hostname }}}}",
                        "state": "directory",
                        "mode": "0755",
                    },
                },
                *render,
            ],
        }
    ]
    # What the inventory and the playbook set (as extra vars here: vars_files would win over them).
    settings = {
        "common_domain": "lab.internal",
        "munin_transmission_rpc_password": "rpc-password-from-vault",
        "munin_plugin_thresholds": {
            "fetchfleet_postgres": {
                "fetchfleet_postgres_lag_seconds_warning": "60",
                "fetchfleet_postgres_lag_seconds_critical": "",
            }
        },
    }
    run_play(play, settings, out, inventory=str(out / "hosts.yml"))
    return out


def validate(command: str, path: Path) -> subprocess.CompletedProcess:
    if not (MUNIN / ".complete").exists():
        pytest.fail(f"munin not unpacked in {MUNIN}: run `make setup` (scripts/unpack-munin.sh)")
    argv = shlex.split(command.replace("%s", shlex.quote(str(path))))
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env={**os.environ, "PERL5LIB": f"{MUNIN}/usr/share/perl5"},
    )


def sections(plugin_conf: str) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    current = None
    for line in plugin_conf.splitlines():
        if line.startswith("["):
            current = out.setdefault(line.strip("[]"), {})
        elif current is not None and line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            current[key] = value
    return out


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_munin_node_answers_the_masters_only_and_munin_accepts_the_file(
    rendered: Path, host: str
) -> None:
    path = rendered / host / "munin-node.conf"
    text = path.read_text()
    assert re.findall(r"^allow (.*)$", text, re.M) == [
        r"^127\.0\.0\.1$",
        r"^::1$",
        r"^10\.77\.0\.61$",
    ]
    assert re.findall(r"^cidr_allow (.*)$", text, re.M) == ["10.77.0.61/32"]
    assert f"host_name {host}\n" in text and "port 4949\n" in text
    checked = validate(task_validate("node_install.yml", "/etc/munin/munin-node.conf"), path)
    assert checked.returncode == 0, checked.stderr
    path.with_suffix(".broken").write_text(text + "notakeyvalueline\n")
    assert (
        validate(
            task_validate("node_install.yml", "/etc/munin/munin-node.conf"),
            path.with_suffix(".broken"),
        ).returncode
        != 0
    )


def test_each_host_runs_the_plugins_of_its_groups(rendered: Path) -> None:
    fleet = {
        host: {
            k
            for k in sections((rendered / host / "plugin-conf").read_text())
            if k.startswith("fetchfleet_")
        }
        for host in HOSTS
    }
    assert fleet == {
        "lb1": {"fetchfleet_nginx"},
        "web1": {"fetchfleet_supervisor", "fetchfleet_app", "fetchfleet_nginx"},
        "web2": {"fetchfleet_supervisor", "fetchfleet_nginx"},
        "worker1": {"fetchfleet_supervisor", "fetchfleet_transmission", "fetchfleet_nginx"},
        "db1": {"fetchfleet_postgres", "fetchfleet_pgbouncer"},
        "db2": {"fetchfleet_postgres"},
        "mq1": {"fetchfleet_celery"},
        "ops1": set(),
    }
    db1 = sections((rendered / "db1" / "plugin-conf").read_text())["fetchfleet_postgres"]
    assert (db1["user"], db1["env.role"], db1["env.replicas"]) == ("postgres", "primary", "db2")
    assert db1["env.fetchfleet_postgres_lag_seconds_warning"] == "60"
    assert db1["env.fetchfleet_postgres_lag_seconds_critical"] == "none"
    db2 = sections((rendered / "db2" / "plugin-conf").read_text())["fetchfleet_postgres"]
    assert db2["env.role"] == "replica" and "env.replicas" not in db2
    worker = sections((rendered / "worker1" / "plugin-conf").read_text())
    assert worker["fetchfleet_transmission"]["env.password"] == "rpc-password-from-vault"
    assert worker["fetchfleet_nginx"]["group"] == "adm" and worker["df"] == {
        "env.warning": "92",
        "env.critical": "98",
    }
    assert (
        sections((rendered / "mq1" / "plugin-conf").read_text())["fetchfleet_celery"]["env.queues"]
        == "transfers media index"
    )


@pytest.mark.parametrize("host", ["web1", "db1", "worker1"])
def test_munin_parses_the_plugin_settings(rendered: Path, host: str) -> None:
    command = task_validate("node_plugins.yml", "/etc/munin/plugin-conf.d/fetchfleet")
    checked = validate(command, rendered / host / "plugin-conf")
    assert checked.returncode == 0, checked.stderr
    broken = rendered / host / "plugin-conf.broken"
    broken.write_text((rendered / host / "plugin-conf").read_text() + "env.x=1\n")
    assert validate(command, broken).returncode != 0


def test_the_master_lists_every_host_and_pages_through_the_pager(rendered: Path) -> None:
    conf = (rendered / "ops1" / "munin.conf").read_text()
    assert re.findall(r"^\[lab\.internal;(\w+)\]$", conf, re.M) == sorted(HOSTS)
    assert "    address 10.77.0.42\n" in conf
    contact = (REPO / "monitoring" / "pager" / "munin-contact.txt").read_text()
    assert f"contact.pagerduty.text {contact}\n" in conf
    command = re.search(r"^contact\.pagerduty\.command (.*)$", conf, re.M).group(1)
    assert (
        command == "/usr/local/bin/fetchfleet-pager --config /etc/fetchfleet/pager.json"
        and "$" not in command
    )
    service = (rendered / "ops1" / "update.service").read_text()
    assert re.findall(r"^ExecStart=(\S+)", service, re.M) == [
        "-/usr/share/munin/munin-update",
        "/usr/share/munin/munin-limits",
        "-/usr/local/bin/fetchfleet-pager",  # PagerDuty out of reach does not fail the unit
    ]
    # The unit's end must not kill the pager munin-limits started while it still reads the pipe.
    assert re.findall(r"^KillMode=(.*)$", service, re.M) == ["process"]
    assert "OnUnitActiveSec=1min" in (rendered / "ops1" / "update.timer").read_text()
    assert (
        "PYTHONPATH=/opt/fetchfleet-pager/lib exec /opt/fetchfleet-pager/venv/bin/python -m pager"
        in (rendered / "ops1" / "fetchfleet-pager").read_text()
    )


def test_the_pager_config_links_to_the_served_runbooks(rendered: Path) -> None:
    from pager import cli

    config = cli.load_config(rendered / "ops1" / "pager.json")
    assert config.events_url == "https://events.pagerduty.com" and config.ca_file is None
    assert config.links.runbook_url == "http://10.77.0.61/runbooks"
    assert config.links.munin_url == "http://10.77.0.61/munin"
    dbdir = re.search(r"^dbdir (.*)$", (rendered / "ops1" / "munin.conf").read_text(), re.M)
    assert config.munin_limits_file == Path(dbdir.group(1)) / "limits"  # munin-limits' state
    site = (rendered / "ops1" / "site.conf").read_text()
    assert "location /runbooks/ {\n        alias /usr/local/share/fetchfleet/runbooks/;" in site
    assert "auth_basic_user_file /etc/nginx/munin.htpasswd;" in site
    assert (
        json.loads((rendered / "ops1" / "pager.json").read_text())["spool_dir"]
        == "/var/spool/fetchfleet-pager"
    )
