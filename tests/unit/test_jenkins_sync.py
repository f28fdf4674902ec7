"""`fab jenkins.sync` / `jenkins.status` / `jenkins.run` with the real python-jenkins against a
stand-in of the Jenkins REST API (tests/unit/jenkins_standin.py): create, leave alone, update,
delete, refuse a wrong token; and the whole path through `fab` with an inventory whose token is
an Ansible Vault value."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fetchfleet.jenkins import controller as J
from fetchfleet.jenkins.jobs import JOBS, render

from jenkins_standin import JenkinsStandin

REPO = Path(__file__).resolve().parents[2]
SITE = {"repo-url": "https://git.test.invalid/fetchfleet.git"}


@pytest.fixture
def standin():
    with JenkinsStandin() as jenkins:
        yield jenkins


@pytest.fixture
def server(standin):
    return J.connect(standin.url, standin.state.user, standin.state.token)


def config_writes(standin) -> list[str]:
    return [
        path
        for method, path in standin.state.writes()
        if "createItem" in path or "config.xml" in path or "doDelete" in path
    ]


def test_first_sync_creates_every_job_second_sends_nothing(standin, server):
    wanted = render(SITE)
    first = J.sync(server, wanted, out=lambda _: None)
    assert sorted(first.create) == sorted(wanted) and first.changes == len(wanted)
    assert standin.state.jobs == {name: job.xml for name, job in wanted.items()}
    before = len(config_writes(standin))
    second = J.sync(server, render(SITE), out=lambda _: None)
    assert second.changes == 0 and sorted(second.unchanged) == sorted(wanted)
    assert len(config_writes(standin)) == before


def test_an_edited_job_is_updated_and_a_removed_one_deleted(standin, server, tmp_path):
    J.sync(server, render(SITE), out=lambda _: None)
    jobs = tmp_path / "jobs"
    shutil.copytree(JOBS, jobs)
    ops = jobs / "operations.yaml"
    text = ops.read_text()
    assert "schedule: H 3 * * *" in text
    text = text.replace("schedule: H 3 * * *", "schedule: H 2 * * *")
    start = text.index("      - '{name}-{job}':\n          job: release-cleanup")
    ops.write_text(text[:start])
    edited = render(SITE, jobs)
    writes = len(config_writes(standin))
    done = J.sync(server, edited, out=lambda _: None)
    assert done.update == ["fetchfleet-drift-check"]
    assert done.delete == ["fetchfleet-release-cleanup"]
    assert done.create == []
    assert "fetchfleet-release-cleanup" not in standin.state.jobs
    assert "<spec>H 2 * * *</spec>" in standin.state.jobs["fetchfleet-drift-check"]
    assert len(config_writes(standin)) == writes + 2


def test_a_job_made_by_hand_is_left_alone(standin, server):
    server.create_job("someones-experiment", "<project><description>mine</description></project>")
    done = J.sync(server, render(SITE), out=lambda _: None)
    assert done.unmanaged == ["someones-experiment"] and done.delete == []
    assert "someones-experiment" in standin.state.jobs


def test_dry_run_sends_nothing(standin, server):
    said: list[str] = []
    done = J.sync(server, render(SITE), dry_run=True, out=said.append)
    assert len(done.create) == len(said) and said[0].startswith("would create ")
    assert standin.state.jobs == {} and config_writes(standin) == []


def test_a_wrong_token_is_refused_with_a_clear_error(standin):
    with pytest.raises(J.ControllerError) as err:
        J.connect(standin.url, standin.state.user, standin.state.token + "x")
    message = str(err.value)
    assert standin.url in message and "fetchfleet-sync" in message and "401" in message
    assert "jenkins_sync_token" in message
    assert standin.state.jobs == {}


def test_a_controller_that_does_not_answer_is_named():
    with JenkinsStandin() as gone:
        url = gone.url
    with pytest.raises(J.ControllerError, match=f"Jenkins at {url}"):
        J.connect(url, "u", "t", timeout=5)


def test_status_shows_each_jobs_last_result_time_and_duration(standin, server):
    wanted = render(SITE)
    J.sync(server, wanted, out=lambda _: None)
    standin.state.outcomes["fetchfleet-backup-status"] = ("FAILURE", "stale: dump 30h old\n")
    build, console = J.run_job(server, "fetchfleet-backup-status", poll=0.01)
    assert (build["result"], console) == ("FAILURE", "stale: dump 30h old\n")
    build, _ = J.run_job(server, "fetchfleet-drift-check", {"REASON": "test"}, poll=0.01)
    assert build["result"] == "SUCCESS" and build["number"] == 1
    del standin.state.jobs["fetchfleet-release-cleanup"]
    rows = {r["job"]: r for r in J.status(server, wanted)}
    assert set(rows) == set(wanted)
    assert rows["fetchfleet-backup-status"]["result"] == "FAILURE"
    assert rows["fetchfleet-backup-status"]["schedule"] == "H * * * *"
    assert rows["fetchfleet-drift-check"]["last"] == "#1"
    assert rows["fetchfleet-drift-check"]["duration"] == "1.5s"
    assert rows["fetchfleet-drift-check"]["started"].endswith("UTC")
    assert rows["fetchfleet-pipeline"]["result"] == "never built"
    assert rows["fetchfleet-pipeline"]["schedule"] == "push"
    assert rows["fetchfleet-release-cleanup"]["result"] == "NOT ON SERVER (fab jenkins.sync)"
    builds = standin.state.builds["fetchfleet-drift-check"]
    assert builds[0].parameters == {"REASON": "test"}


def test_run_of_an_unknown_job_says_so(server):
    with pytest.raises(J.ControllerError, match="no job 'nope'"):
        J.run_job(server, "nope")


# --- the whole path: fab, the inventory, a vault-encrypted token --------------------------------


def vault_inventory(tmp: Path, url: str, token: str) -> tuple[Path, dict[str, str]]:
    password = tmp / "vault-password"
    password.write_text("correct horse battery staple\n")
    tools = Path(sys.executable).parent
    encrypted = subprocess.run(
        [
            str(tools / "ansible-vault"),
            "encrypt_string",
            "--vault-password-file",
            str(password),
            "--name",
            "vault_jenkins_sync_token",
            token,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    inventory = tmp / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "group_vars" / "jenkins").mkdir(parents=True)
    (inventory / "hosts.yml").write_text(
        "all:\n  hosts:\n    ci1:\n      ansible_host: 127.0.0.1\n"
        "  children:\n    jenkins:\n      hosts:\n        ci1:\n"
    )
    (inventory / "group_vars" / "all" / "vault.yml").write_text(encrypted)
    (inventory / "group_vars" / "jenkins" / "jenkins.yml").write_text(
        f'jenkins_url: {url}\njenkins_sync_token: "{{{{ vault_jenkins_sync_token }}}}"\n'
        "jenkins_jobs_repo_url: https://git.test.invalid/site.git\n"
    )
    env = {**os.environ, "ANSIBLE_VAULT_PASSWORD_FILE": str(password)}
    env.pop(J.TOKEN_ENV, None)
    return inventory, env


def fab(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    tool = Path(sys.executable).parent / "fab"
    return subprocess.run(
        [str(tool), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_fab_jenkins_sync_and_status_through_the_inventory_and_the_vault(standin, tmp_path):
    inventory, env = vault_inventory(tmp_path, standin.url, standin.state.token)
    first = fab("jenkins.sync", "--env", str(inventory), env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "10 created, 0 updated, 0 deleted, 0 unchanged" in first.stdout
    assert all("https://git.test.invalid/site.git" in x for x in standin.state.jobs.values())
    second = fab("jenkins.sync", "--env", str(inventory), env=env)
    assert "0 created, 0 updated, 0 deleted, 10 unchanged" in second.stdout, second.stdout
    status = fab("jenkins.status", "--env", str(inventory), env=env)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[0].split() == [
        "job",
        "schedule",
        "last",
        "result",
        "started",
        "duration",
    ]
    assert len(status.stdout.splitlines()) == 11


def test_fab_jenkins_sync_with_a_wrong_token_fails_before_sending_anything(standin, tmp_path):
    inventory, env = vault_inventory(tmp_path, standin.url, "not-the-token")
    done = fab("jenkins.sync", "--env", str(inventory), env=env)
    assert done.returncode == 2
    assert "refused user 'fetchfleet-sync'" in done.stderr and standin.url in done.stderr
    assert standin.state.writes() == []


def test_fab_jenkins_sync_without_the_vault_password_names_the_variable(standin, tmp_path):
    inventory, env = vault_inventory(tmp_path, standin.url, standin.state.token)
    env.pop("ANSIBLE_VAULT_PASSWORD_FILE")
    done = fab("jenkins.sync", "--env", str(inventory), env=env)
    assert done.returncode == 2
    assert "jenkins_sync_token" in done.stderr and "vault" in done.stderr.lower()
    assert standin.state.requests == []
