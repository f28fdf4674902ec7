"""The Jenkins controller of an environment, through python-jenkins: sync jobs, report, run one.

Where it is comes from the inventory: the first host of group `jenkins` (its address, and
`jenkins_nginx_port` from roles/jenkins), or `jenkins_url` when set. The user is
`jenkins_sync_user` (roles/jenkins creates it with an API token); the token is
`FETCHFLEET_JENKINS_TOKEN` when set (a CI secret), else the inventory's `jenkins_sync_token`,
resolved by Ansible itself — a vault value decrypted with ANSIBLE_VAULT_PASSWORD_FILE, or in the
lab the secret the lab generated.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jenkins as python_jenkins

from fetchfleet.inventory import REPO, InventoryError, inventory_path, load_fleet
from fetchfleet.jenkins.jobs import Job, SyncPlan, plan
from fetchfleet.output import Progress

TOKEN_ENV = "FETCHFLEET_JENKINS_TOKEN"
DEFAULT_USER = "fetchfleet-sync"
# Inventory variables (group_vars of `jenkins` or all) that become job variables.
SITE_VARS = {
    "jenkins_jobs_repo_url": "repo-url",
    "jenkins_jobs_branch": "branch",
    "jenkins_jobs_staging": "staging",
    "jenkins_jobs_production": "production",
}


class ControllerError(Exception):
    """The controller could not be reached or refused us; says which URL, user and what to check."""


@dataclass(frozen=True)
class Settings:
    url: str
    user: str
    token: str
    site: dict[str, str]
    env: str


def resolve_var(env: str, host: str, name: str) -> str | None:
    """One inventory variable of `host`, templated by Ansible (vault, lookups) on this machine."""
    tool = Path(sys.executable).parent / "ansible"
    argv = [str(tool) if tool.exists() else "ansible", host, "-i", str(inventory_path(env))]
    argv += ["-c", "local", "-m", "ansible.builtin.debug", "-a", f"var={name}", "-o"]
    environ = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_FORCE_COLOR": "0",
    }
    proc = subprocess.run(argv, capture_output=True, text=True, env=environ, check=False)
    if proc.returncode != 0:
        raise InventoryError(
            f"inventory {env}: could not read {name} of {host}: {(proc.stdout + proc.stderr).strip()[-500:]}"
        )
    _, _, answer = proc.stdout.partition("=>")
    value = json.loads(answer).get(name)
    if value is None or str(value).startswith("VARIABLE IS NOT DEFINED"):
        return None
    return str(value)


def settings(env: str = "lab") -> Settings:
    fleet = load_fleet(env)
    hosts = fleet.group("jenkins")
    if not hosts:
        raise InventoryError(f"inventory {fleet.name} has no host in group jenkins")
    host = hosts[0]
    url = host.vars.get("jenkins_url")
    if not url:
        port = int(host.vars.get("jenkins_nginx_port", 80))
        url = f"http://{host.address}{'' if port == 80 else f':{port}'}/"
    user = str(host.vars.get("jenkins_sync_user", DEFAULT_USER))
    token = os.environ.get(TOKEN_ENV) or resolve_var(env, host.name, "jenkins_sync_token")
    if not token:
        raise InventoryError(
            f"no API token for {user} on {url}: set {TOKEN_ENV}, or jenkins_sync_token in "
            f"inventory {fleet.name} (from the vault: vault_jenkins_sync_token)"
        )
    site = {job_var: str(host.vars[var]) for var, job_var in SITE_VARS.items() if var in host.vars}
    return Settings(str(url), user, token, site, fleet.name)


def connect(url: str, user: str, token: str, timeout: float = 30) -> python_jenkins.Jenkins:
    """A python-jenkins client whose credentials were checked (GET /me/api/json)."""
    server = python_jenkins.Jenkins(url, username=user, password=token, timeout=timeout)
    try:
        who = server.get_whoami()
    except python_jenkins.JenkinsException as err:
        if "[401]" in str(err) or "[403]" in str(err):
            raise ControllerError(
                f"Jenkins at {url} refused user {user!r} and its API token (401/403): check the "
                f"token ({TOKEN_ENV} or the inventory's jenkins_sync_token) and that the user "
                "exists (roles/jenkins, Configuration as Code)"
            ) from err
        raise ControllerError(f"Jenkins at {url}: {err}") from err
    except OSError as err:
        raise ControllerError(f"Jenkins at {url} does not answer: {err}") from err
    if who.get("id") != user:
        raise ControllerError(f"Jenkins at {url} says we are {who.get('id')!r}, not {user!r}")
    return server


def server_configs(server: python_jenkins.Jenkins) -> dict[str, str]:
    return {j["fullname"]: server.get_job_config(j["fullname"]) for j in server.get_all_jobs()}


def sync(
    server: python_jenkins.Jenkins,
    wanted: dict[str, Job],
    dry_run: bool = False,
    out: Progress = print,
) -> SyncPlan:
    """Create, reconfigure and delete jobs until the server has exactly `wanted` (of its
    JJB-managed jobs); the rest is left alone."""
    todo = plan(wanted, server_configs(server))
    verb = "would " if dry_run else ""
    for name in todo.create:
        out(f"{verb}create {name}")
        if not dry_run:
            server.create_job(name, wanted[name].xml)
    for name in todo.update:
        out(f"{verb}update {name}")
        if not dry_run:
            server.reconfig_job(name, wanted[name].xml)
    for name in todo.delete:
        out(f"{verb}delete {name} (no longer in jenkins/jobs)")
        if not dry_run:
            server.delete_job(name)
    for name in todo.unmanaged:
        out(f"left alone: {name} (not made by Jenkins Job Builder)")
    return todo


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    seconds = ms / 1000
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}min"


def status(server: python_jenkins.Jenkins, wanted: dict[str, Job] | None = None) -> list[dict]:
    """One row per job: its schedule, last build's number, result, start time and duration.
    A job defined in jenkins/jobs but missing on the server says so (run fab jenkins.sync)."""
    on_server = {j["fullname"] for j in server.get_all_jobs()}
    rows = []
    for name in sorted(on_server | set(wanted or {})):
        schedule = _schedule(wanted[name]) if wanted and name in wanted else ""
        if name not in on_server:
            rows.append(_row(name, schedule, "-", "NOT ON SERVER (fab jenkins.sync)", None, None))
            continue
        info = server.get_job_info(name)
        last = info.get("lastBuild")
        if not last:
            rows.append(_row(name, schedule, "-", "never built", None, None))
            continue
        build = server.get_build_info(name, last["number"])
        result = "RUNNING" if build.get("building") else str(build.get("result"))
        rows.append(
            _row(
                name, schedule, f"#{last['number']}", result, build["timestamp"], build["duration"]
            )
        )
    return rows


def _row(name: str, schedule: str, last: str, result: str, ts: int | None, dur: int | None) -> dict:
    return {
        "job": name,
        "schedule": schedule or "-",
        "last": last,
        "result": result,
        "started": _when(ts),
        "duration": _duration(dur),
    }


def _schedule(job: Job) -> str:
    root = job.element()
    spec = root.find(".//hudson.triggers.TimerTrigger/spec")
    if spec is not None:
        return spec.text or ""
    return "push" if root.find(".//com.cloudbees.jenkins.GitHubPushTrigger") is not None else ""


def run_job(
    server: python_jenkins.Jenkins,
    name: str,
    parameters: dict[str, str] | None = None,
    timeout: float = 3600,
    poll: float = 1.0,
) -> tuple[dict, str]:
    """Start one build, wait for it to finish; (build info, console text)."""
    if not server.job_exists(name):
        raise ControllerError(f"no job {name!r} on the controller (fab jenkins.status lists them)")
    queue_id = server.build_job(name, parameters or None)
    deadline = time.monotonic() + timeout
    while True:
        item = server.get_queue_item(queue_id)
        if item.get("executable"):
            number = item["executable"]["number"]
            break
        if item.get("cancelled"):
            raise ControllerError(f"{name}: the queued build was cancelled")
        if time.monotonic() > deadline:
            raise ControllerError(f"{name}: still queued after {timeout:.0f}s ({item.get('why')})")
        time.sleep(poll)
    while True:
        build = server.get_build_info(name, number)
        if not build.get("building"):
            return build, server.get_build_console_output(name, number)
        if time.monotonic() > deadline:
            raise ControllerError(f"{name} #{number}: still running after {timeout:.0f}s")
        time.sleep(poll)
