"""Every entry point of every role stops on a bad variable before any change, naming it.

One ansible-playbook run against this machine (connection local, check mode) runs, for each case,
only what runs first: the argument-spec validation Ansible prepends to an entry point and the
role's checks, all tagged `always` (`--tags` names no other task, so nothing else can run). Each
case has its own host, so one failure does not hide another, and a good control per entry point
shows that the failure comes from the bad variable, not from the test's own inventory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

# Hosts that fill the inventory's groups; never contacted (TEST-NET-1, and no play targets them).
FLEET = {
    "loadbalancers": "lb-x",
    "web": "web-x",
    "workers": "worker-x",
    "db_primary": "db-x",
    "rabbitmq": "mq-x",
    "solr": "mq-x",
    "monitoring": "ops-x",
    "jenkins": "ops-x",
    "backup": "backup-x",
}
SECRET = "s3cret-" + "x" * 32
RELEASE = {"id": "20260101T000000Z-abc1234", "artifact": "/nonexistent.tar.gz", "python": "3.11"}
SENTINEL = "fetchfleet-sentinel"
RULE = {"port": 1234, "from_networks": ["192.0.2.0/24"]}


@dataclass(frozen=True)
class Case:
    """An entry point run with `variables` (the good control) and, for each bad variable, once
    more with it; `groups` are the case host's inventory groups."""

    role: str
    entry_point: str = "main"
    variables: dict[str, Any] = field(default_factory=dict)
    groups: tuple[str, ...] = ()
    bad: tuple[tuple[str, Any], ...] = ()
    # main with include_role, as lab_seeder runs transmission, instead of from `roles:`
    included: bool = False


APP = {
    "app_database_password": SECRET,
    "app_broker_password": SECRET,
    "app_transmission_password": SECRET,
    "app_solr_password": SECRET,
    "app_secret_key": SECRET,
}
NGINX = {
    "nginx_sites": ["loadbalancer", "app", "storage"],
    "nginx_client_max_body_size": "3m",
    "nginx_app_socket": "/run/x/gunicorn.sock",
    "nginx_app_static_root": "/srv/x/current/static",
    "nginx_app_accel_prefix": "/_protected",
    "nginx_storage_root": "/srv/x/shared/storage",
}
POSTGRESQL = {
    f"postgresql_{who}_password": SECRET for who in ("app", "replication", "backup", "monitor")
}
# Any file that exists stands in for the TLS files (the checks look for them, nothing reads them).
LOGS = {f"logs_tls_{f}_file": str(REPO / "README.md") for f in ("ca", "cert", "key")}
CASES = [
    Case("common", bad=(("common_journald_storage", "tape"),)),
    Case("hardening", bad=(("hardening_sshd_permit_root_login", "yes"),)),
    Case("hardening", bad=(("hardening_sysctl", {"net.ipv4.ip_forward": "off"}),)),
    Case("hardening", bad=(("hardening_audit_rules", ["watch /etc/passwd"]),)),
    Case("hardening", bad=(("hardening_sshd_max_auth_tries", 10),)),
    Case("logs", variables=LOGS, bad=(("logs_retention_max_age", "forever"),)),
    Case("logs", variables=LOGS, bad=(("logs_tls_key_file", "/nonexistent/web1.key"),)),
    Case("logs", variables=LOGS, bad=(("logs_tls_cert_file", None),)),
    Case("common", bad=(("common_firewall_allow", [{"port": 22, "proto": "sctp", **RULE}]),)),
    Case("common", bad=(("common_journald_system_max_use", "half"),)),
    Case(
        "common",
        "firewall",
        {"common_firewall_name": "test", "common_firewall_allow": [RULE]},
        bad=(("common_firewall_allow", [{"port": 22, "from_network": ["192.0.2.1/32"]}]),),
    ),
    Case(
        "common",
        "firewall_check",
        {"common_firewall_check": {"x_firewall_allow": [RULE]}},
        bad=(("common_firewall_check", "x_firewall_allow"),),
    ),
    Case("fleet", bad=(("fleet_database_port", "pgbouncer"),)),
    Case("app", variables=APP, groups=("web",), bad=(("app_gunicorn_workers", "many"),)),
    Case("app", variables=APP, groups=("web",), bad=(("app_secret_key", "too-short"),)),
    *(
        Case("app", ep, {"app_release": RELEASE}, ("web",), (("app_release", RELEASE["id"]),))
        for ep in ("install", "migrate")
    ),
    Case("app", "programs", {}, ("workers",), (("app_celery_concurrency", "lots"),)),
    Case("nginx", variables=NGINX, bad=(("nginx_sites", ["balancer"]),)),
    Case("nginx", variables=NGINX, bad=(("nginx_app_socket", None),)),
    Case("nginx", variables=NGINX, bad=(("nginx_storage_root", "srv/storage"),)),
    # A monitoring host's nginx serves no app site and needs none of the app's paths.
    Case("nginx", variables={"nginx_sites": []}, bad=(("nginx_sites", ["app"]),)),
    Case("nginx", variables=NGINX, bad=(("nginx_lb_upstream_group", "webz"),)),
    Case("nginx", variables=NGINX, bad=(("nginx_firewall_extra", [{"port": 8099}]),)),
    Case(
        "postgresql",
        variables=POSTGRESQL,
        groups=("db_replicas",),
        bad=(("postgresql_pgbouncer_pool_mode", "sometimes"),),
    ),
    Case(
        "postgresql",
        variables=POSTGRESQL,
        groups=("db_replicas",),
        bad=(("postgresql_settings", {"work_mem": ["4MB"]}),),
    ),
    Case(
        "postgresql",
        variables=POSTGRESQL,
        groups=("db_replicas",),
        bad=(("postgresql_settings", "shared_buffers=1GB"),),
    ),
    Case(
        "rabbitmq",
        variables={"rabbitmq_erlang_cookie": "C" * 24},
        bad=(("rabbitmq_amqp_port", "amqp"),),
    ),
    Case(
        "rabbitmq",
        variables={"rabbitmq_erlang_cookie": "C" * 24},
        bad=(("rabbitmq_firewall_extra", [{"port": 5672, "proto": "sctp", **RULE}]),),
    ),
    Case("solr", variables={"solr_admin_password": SECRET}, bad=(("solr_install_source", "git"),)),
    Case(
        "solr",
        variables={"solr_admin_password": SECRET},
        bad=(("solr_firewall_extra", [{**RULE, "port": "solr"}]),),
    ),
    Case(
        "supervisor",
        variables={"supervisor_programs": [{"name": "x", "command": "/bin/true"}]},
        bad=(
            (
                "supervisor_programs",
                [{"name": "x", "command": "/bin/true", "stopsignal": "SIGTERM"}],
            ),
        ),
    ),
    Case(
        "transmission",
        variables={"transmission_rpc_password": SECRET},
        bad=(("transmission_rpc_port", "rpc"),),
    ),
    Case(
        "transmission",
        variables={"transmission_rpc_password": SECRET},
        bad=(("transmission_firewall_extra", [{"port": 9091}]),),
    ),
    # Included roles see their dependencies' defaults (fleet_), and so do the roles they include:
    # the rules refer to ports from roles/fleet, and are checked in common's scope.
    Case(
        "transmission",
        variables={"transmission_rpc_password": SECRET},
        bad=(("transmission_firewall_extra", [{"port": 9091}]),),
        included=True,
    ),
    Case(
        "rabbitmq",
        variables={"rabbitmq_erlang_cookie": "C" * 24},
        bad=(("rabbitmq_firewall_extra", [{"port": 5672, "proto": "sctp", **RULE}]),),
        included=True,
    ),
    Case(
        "lab_seeder",
        variables={"lab_seeder_rpc_password": SECRET, "lab_seeder_networks": ["192.0.2.0/24"]},
        groups=("lab_seeders",),
        bad=(("lab_seeder_tracker_port", "tracker"),),
    ),
]


# What may run: checks, and the includes that bring them.
CHECKS = {
    "ansible.builtin.validate_argument_spec",
    "ansible.builtin.assert",
    "ansible.builtin.include_tasks",
    "ansible.builtin.include_role",
}


@dataclass
class Outcome:
    failed_task: str | None
    message: str
    changed: int
    ran: set[str] = field(default_factory=set)


def run_checks(runs: dict[str, tuple[Case, dict[str, Any]]], tmp_path: Path) -> dict[str, Outcome]:
    """The one helper: run each (case, variables) on a host of its own, only the checks."""
    hosts: dict[str, dict[str, Any]] = {
        h: {"ansible_host": f"192.0.2.{i + 10}"} for i, h in enumerate(sorted(set(FLEET.values())))
    }
    children: dict[str, dict[str, Any]] = {g: {"hosts": {h: None}} for g, h in FLEET.items()}
    children["db_replicas"] = {"hosts": {}}
    children["lab_seeders"] = {"hosts": {}}
    hosts[SENTINEL] = {"ansible_connection": "local"}
    plays = []
    for host, (case, variables) in runs.items():
        hosts[host] = {
            "ansible_connection": "local",
            "ansible_host": "127.0.0.1",
            "ansible_python_interpreter": sys.executable,
            **variables,
        }
        for group in case.groups:
            children[group]["hosts"][host] = None
        # As the playbooks do: main from `roles:` (whose defaults, and their dependencies', the
        # whole play sees), other entry points with include_role. The sentinel runs nothing and
        # keeps the run going: a play whose hosts all failed would end it.
        play: dict[str, Any] = {"name": host, "hosts": f"{host}:{SENTINEL}", "gather_facts": False}
        skip_sentinel = f"inventory_hostname != '{SENTINEL}'"
        if case.entry_point == "main" and not case.included:
            play["roles"] = [{"role": case.role, "when": skip_sentinel}]
        else:
            play["tasks"] = [
                {
                    "name": f"{case.role} {case.entry_point}",
                    "ansible.builtin.include_role": {
                        "name": case.role,
                        "tasks_from": case.entry_point,
                    },
                    "when": skip_sentinel,
                    "tags": ["always"],
                }
            ]
        plays.append(play)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts, "children": children}}))
    playbook = tmp_path / "checks.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(inventory),
            str(playbook),
            "--check",
            "--tags",
            "fetchfleet-checks-only",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"ansible-playbook printed no JSON report:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    outcomes = {h: Outcome(None, "", s.get("changed", 0)) for h, s in report["stats"].items()}
    assert SENTINEL in outcomes, f"the run stopped early:\n{proc.stderr[-3000:]}"
    for play in report["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                if not result.get("skipped"):
                    outcomes[host].ran.add(result.get("action", "?"))
                items = result.get("results") or [result]
                failures = [r for r in items if r.get("failed")]
                if failures and outcomes[host].failed_task is None:
                    messages = [
                        json.dumps(r.get("argument_errors") or r.get("msg")) for r in failures
                    ]
                    outcomes[host].failed_task = task["task"]["name"]
                    outcomes[host].message = " ".join(messages)
    missing = set(runs) - set(outcomes)
    assert not missing, f"no result for {missing}:\n{proc.stderr[-3000:]}"
    return outcomes


def _runs() -> dict[str, tuple[Case, dict[str, Any], str | None]]:
    runs: dict[str, tuple[Case, dict[str, Any], str | None]] = {}
    for case in CASES:
        label = f"{case.role}-{case.entry_point}{'-included' if case.included else ''}"
        good = f"{label}-good".replace("_", "-")
        runs.setdefault(good, (case, case.variables, None))
        for name, value in case.bad:
            variables = {k: v for k, v in case.variables.items() if k != name}
            if value is not None:  # None: leave the variable out
                variables[name] = value
            runs[f"{label}-{name}".replace("_", "-")] = (
                case,
                variables,
                name,
            )
    return runs


RUNS = _runs()


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    runs = {host: (case, variables) for host, (case, variables, _) in RUNS.items()}
    return run_checks(runs, tmp_path_factory.mktemp("role-checks"))


@pytest.mark.parametrize("host", [h for h, run in RUNS.items() if run[2] is None])
def test_good_variables_pass_every_check(outcomes: dict[str, Outcome], host: str) -> None:
    outcome = outcomes[host]
    assert outcome.failed_task is None, f"{host}: {outcome.failed_task}: {outcome.message}"
    assert outcome.changed == 0
    assert outcome.ran and outcome.ran <= CHECKS, f"{host} ran {outcome.ran - CHECKS}"


@pytest.mark.parametrize("host", [h for h, run in RUNS.items() if run[2] is not None])
def test_a_bad_variable_stops_the_entry_point_naming_it(
    outcomes: dict[str, Outcome], host: str
) -> None:
    _, _, variable = RUNS[host]
    outcome = outcomes[host]
    assert outcome.failed_task, f"{host}: {variable} was accepted"
    assert variable and variable in outcome.message, (
        f"{host}: {outcome.failed_task}: {outcome.message}"
    )
    assert outcome.changed == 0
    assert outcome.ran <= CHECKS, f"{host} ran {outcome.ran - CHECKS}"
