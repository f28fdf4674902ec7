"""roles/jenkins without a host: its templates rendered by real Ansible on this machine (into a
scratch directory only) and read back, and its argument specs and checks run on bad input.
The role itself runs in the lab, up to the war's checksum (tests/lab/test_jenkins.py)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles" / "jenkins"
TOKEN = "11" + "0123456789abcdef" * 2
PASSWORD = "a-long-admin-password-0123"
REQUIRED = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())["jenkins_required_plugins"]
GOOD = {
    "jenkins_plugins": [{"name": n, "version": "1", "sha256": "c" * 64} for n in REQUIRED],
    "jenkins_war_url": "https://mirror.test.invalid/jenkins.war",
    "jenkins_war_sha256": "ab" * 32,
    "jenkins_admin_password": PASSWORD,
    "jenkins_sync_token": TOKEN,
    "jenkins_admin_networks": ["192.0.2.0/24"],
    "jenkins_vault_password": "vault-secret",
}


def play(tmp: Path, tasks: list[dict], values: dict) -> subprocess.CompletedProcess:
    playbook = tmp / "play.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "roles/jenkins offline",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "vars_files": [
                        str(ROLE / "defaults" / "main.yml"),
                        str(ROLE / "vars" / "main.yml"),
                    ],
                    "tasks": tasks,
                }
            ]
        )
    )
    extra = tmp / "extra.json"
    extra.write_text(
        json.dumps({**values, "out": str(tmp), "ansible_python_interpreter": sys.executable})
    )
    tool = Path(sys.executable).parent / "ansible-playbook"
    argv = [str(tool), "-i", "localhost,", "-c", "local", "-e", f"@{extra}", str(playbook)]
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_ROLES_PATH": str(ROLE.parent)}
    return subprocess.run(argv, env=env, capture_output=True, text=True, check=False)


TEMPLATES = {
    "casc.yaml": "etc/jenkins/casc.yaml.j2",
    "secrets.env": "etc/jenkins/secrets.env.j2",
    "jenkins.service": "etc/systemd/system/jenkins.service.j2",
    "jenkins.conf": "etc/nginx/sites-available/jenkins.conf.j2",
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("role")
    tasks = [
        {
            "name": f"Render {name}",
            "ansible.builtin.template": {
                "src": str(ROLE / "templates" / src),
                "dest": "{{ out }}/" + name,
                "mode": "0600",
            },
        }
        for name, src in TEMPLATES.items()
    ]
    proc = play(tmp, tasks, GOOD)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return tmp


def test_casc_has_no_anonymous_access_csrf_on_and_agents_off(rendered):
    casc = yaml.safe_load((rendered / "casc.yaml").read_text())
    jenkins = casc["jenkins"]
    assert jenkins["slaveAgentPort"] == -1 and jenkins["agentProtocols"] == []
    assert "standard" in jenkins["crumbIssuer"]
    realm = jenkins["securityRealm"]["local"]
    assert realm["allowsSignup"] is False
    assert [u["id"] for u in realm["users"]] == ["admin", "fetchfleet-sync"]
    entries = jenkins["authorizationStrategy"]["globalMatrix"]["entries"]
    names = [e["user"]["name"] for e in entries]
    assert names == ["admin", "fetchfleet-sync"]  # nobody else, anonymous included
    assert entries[0]["user"]["permissions"] == ["Overall/Administer"]
    assert "Overall/Administer" not in entries[1]["user"]["permissions"]
    assert casc["unclassified"]["location"]["url"] == "http://localhost/"
    assert casc["credentials"]["system"]["domainCredentials"][0]["credentials"][0]["file"][
        "id"
    ] == ("fetchfleet-vault-password")


def test_secrets_are_only_in_the_environment_file(rendered):
    casc = (rendered / "casc.yaml").read_text()
    assert PASSWORD not in casc and TOKEN not in casc
    assert "${decodeBase64:${JENKINS_ADMIN_PASSWORD_B64}}" in casc
    assert "${decodeBase64:${JENKINS_SYNC_TOKEN_B64}}" in casc
    env = dict(
        line.split("=", 1)
        for line in (rendered / "secrets.env").read_text().splitlines()
        if "=" in line
    )
    assert base64.b64decode(env["JENKINS_ADMIN_PASSWORD_B64"]).decode() == PASSWORD
    assert base64.b64decode(env["JENKINS_SYNC_TOKEN_B64"]).decode() == TOKEN
    assert base64.b64decode(env["JENKINS_VAULT_PASSWORD_B64"]).decode() == "vault-secret"


def test_jenkins_listens_on_loopback_behind_nginx(rendered):
    unit = (rendered / "jenkins.service").read_text()
    assert "--httpListenAddress=127.0.0.1 --httpPort=8080" in unit
    assert "-jar /opt/jenkins/jenkins-2.479.3.war" in unit
    assert "EnvironmentFile=/etc/jenkins/secrets.env" in unit and "User=jenkins" in unit
    site = (rendered / "jenkins.conf").read_text()
    assert "server 127.0.0.1:8080;" in site and "listen 80;" in site


def validate(tmp: Path, values: dict) -> subprocess.CompletedProcess:
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    tasks = [
        {
            "name": "Validate the role's arguments",
            "ansible.builtin.validate_argument_spec": {
                "argument_spec": spec["argument_specs"]["main"]["options"]
            },
        },
        {
            "name": "Run the role's checks",
            "ansible.builtin.include_tasks": str(ROLE / "tasks" / "assert.yml"),
        },
    ]
    return play(tmp, tasks, values)


def test_good_variables_pass_the_specs_and_checks(tmp_path):
    proc = validate(tmp_path, GOOD)
    assert proc.returncode == 0, proc.stdout[-3000:]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("jenkins_war_url", None),
        ("jenkins_war_sha256", "ABC"),
        ("jenkins_sync_token", "hunter2hunter2hunter2"),
        ("jenkins_admin_password", "short"),
        ("jenkins_admin_networks", ["0.0.0.0/0"]),
        ("jenkins_plugins", []),
    ],
)
def test_bad_variables_are_refused_naming_them(tmp_path, variable, value):
    values = dict(GOOD)
    if value is None:
        del values[variable]
    else:
        values[variable] = value
    proc = validate(tmp_path, values)
    assert proc.returncode != 0
    failure = proc.stdout[proc.stdout.index("fatal:") :]
    assert variable in failure, failure[-1500:]


def test_the_controller_gets_every_package_make_setup_checks_for(tmp_path):
    tasks = [
        {
            "name": "Read them",
            "ansible.builtin.include_tasks": str(ROLE / "tasks" / "repo_packages.yml"),
            "vars": {"role_path": str(ROLE)},
        },
        {
            "name": "Write them down",
            "ansible.builtin.copy": {
                "content": "{{ __jenkins_repo_packages | to_json }}",
                "dest": "{{ out }}/packages.json",
                "mode": "0600",
            },
        },
    ]
    proc = play(tmp_path, tasks, GOOD)
    assert proc.returncode == 0, proc.stdout[-2000:]
    got = json.loads((tmp_path / "packages.json").read_text())
    # What scripts/setup.sh computes from the same files.
    setup = subprocess.run(
        [
            "bash",
            "-c",
            "cat requirements/apt*.txt | sed -e 's/#.*//' | tr -s ' \\n' '\\n' | sed '/^$/d' | sort -u",
        ],
        cwd=ROLE.parents[1],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert sorted(set(got)) == setup and "postgresql-15" in got and "groovy" in got
