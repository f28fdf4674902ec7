"""Run a playbook against an inventory, stream its output, and read its PLAY RECAP."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fetchfleet import stages
from fetchfleet.inventory import REPO, inventory_path

PLAYBOOKS = REPO / "playbooks"
_RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$")
# "TASK [role : name] ****" and "RUNNING HANDLER [role : name] ****" headers, and the
# "changed: [host]" / "changed: [host] => (item=…)" lines under them.
_TASK = re.compile(r"^(?P<kind>TASK|RUNNING HANDLER) \[(?P<name>.*)\] \**$")
_CHANGED = re.compile(r"^changed: \[(?P<host>[^\]]+)\](?: => \(item=(?P<item>.*)\))?")
# ansible.posix.profile_tasks' summary: "role : task name ------------- 1.23s" (wall time of the
# task over all hosts, which run it in parallel).
_TASK_TIME = re.compile(r"^(?P<name>.*?) -* (?P<seconds>\d+\.\d+)s$")
_PROFILE_ENV = {
    "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
    "PROFILE_TASKS_SUMMARY_ONLY": "true",
    "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "all",
    "PROFILE_TASKS_SORT_ORDER": "none",
}


class PlaybookError(Exception):
    pass


def ansible_environ(profile: bool = False) -> dict[str, str]:
    """The environment every ansible-playbook of the suite runs in: the repository's
    ansible.cfg, and Mitogen's strategy (mitogen_linear), which keeps one Python per host for
    the whole play instead of starting an interpreter and uploading a module for every task; the
    lab's no-op converge of site.yml takes about half the time with it (README, "Converge").
    FETCHFLEET_MITOGEN=0 runs Ansible's own linear strategy instead (to tell apart a fault of
    Mitogen's from one of a role's)."""
    environ = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_FORCE_COLOR": "0",
        **(_PROFILE_ENV if profile else {}),
    }
    if os.environ.get("FETCHFLEET_MITOGEN", "1") != "0":
        environ |= {"ANSIBLE_STRATEGY_PLUGINS": str(_mitogen_strategies()),
                    "ANSIBLE_STRATEGY": "mitogen_linear"}  # fmt: skip
    return environ


def _mitogen_strategies() -> Path:
    try:
        import ansible_mitogen
    except ImportError:
        raise PlaybookError(
            "mitogen is missing from this Python (requirements/control.in pins it): run "
            "`make setup`, or FETCHFLEET_MITOGEN=0 for Ansible's own strategy"
        ) from None
    return Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"


@dataclass(frozen=True)
class Recap:
    """Per host: ok, changed, unreachable, failed, skipped, rescued, ignored."""

    hosts: dict[str, dict[str, int]]
    seconds: float
    returncode: int
    output: str = ""
    # With run_playbook(profile=True): seconds per task name, in the order they ran.
    task_seconds: dict[str, float] = field(default_factory=dict)
    # fab converge: the rolling restart that followed it (a fetchfleet.deploy Report), if any.
    restart: Any = None

    @property
    def changed_tasks(self) -> dict[str, list[str]]:
        """Per host, the tasks that changed (or in check mode would change)."""
        return parse_changes(self.output)

    def total(self, key: str) -> int:
        return sum(counts.get(key, 0) for counts in self.hosts.values())

    @property
    def changed(self) -> dict[str, int]:
        return {h: c["changed"] for h, c in self.hosts.items() if c.get("changed")}

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.total("failed") and not self.total("unreachable")


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    hosts: dict[str, dict[str, int]] = {}
    in_recap = False
    for line in output.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        if in_recap and (m := _RECAP.match(line.strip())):
            counts = dict(pair.split("=") for pair in m["counts"].split())
            hosts[m["host"]] = {k: int(v) for k, v in counts.items()}
    return hosts


def parse_changes(output: str) -> dict[str, list[str]]:
    """Per host, the tasks (and handlers) that reported changed, in the order they ran; a
    looped task counts once per host. In check mode: what a converge would change."""
    changes: dict[str, list[str]] = {}
    task = None
    for line in output.splitlines():
        if m := _TASK.match(line.strip()):
            task = m["name"] + (" (handler)" if m["kind"] == "RUNNING HANDLER" else "")
        elif task and (m := _CHANGED.match(line.strip())):
            host = m["host"].split(" -> ")[0]
            tasks = changes.setdefault(host, [])
            if task not in tasks:
                tasks.append(task)
    return changes


def parse_task_seconds(output: str) -> dict[str, float]:
    """Seconds per task from profile_tasks' TASKS RECAP; tasks of the same name add up."""
    seconds: dict[str, float] = {}
    _, found, recap = output.rpartition("TASKS RECAP")
    for line in recap.splitlines() if found else []:
        if m := _TASK_TIME.match(line.strip()):
            seconds[m["name"]] = seconds.get(m["name"], 0.0) + float(m["seconds"])
    return seconds


def run_playbook(
    name: str,
    env: str = "lab",
    limit: str | None = None,
    extra: list[str] | None = None,
    echo: bool = True,
    profile: bool = False,
    staged: bool = True,
) -> Recap:
    """Run playbooks/NAME against inventory ENV; output is streamed as it comes.

    A playbook made only of imports (site.yml) runs as stages (fetchfleet.stages): an imported
    playbook starts once the earlier ones that share a host with it are done, so tiers on other
    hosts run side by side; streamed lines then start with the playbook's name, and the recap
    adds up the stages' (staged=False runs it as one ansible-playbook). With `profile`,
    Recap.task_seconds says how long each task took (ansible.posix.profile_tasks).
    """
    playbook = PLAYBOOKS / name
    if not playbook.exists():
        known = ", ".join(sorted(p.name for p in PLAYBOOKS.glob("*.yml")))
        raise PlaybookError(f"no playbook {name!r} in playbooks/ (known: {known})")
    hosts_of = stages.ansible_hosts_of(inventory_path(env))
    plan = stages.plan(playbook, hosts_of) if staged else None
    if plan and limit:
        plan = stages.within(plan, hosts_of(limit))
    if not plan or len(plan) < 2:
        only = PLAYBOOKS / plan[0].playbook if plan else playbook
        return _run_one(only, env, limit, extra, echo, profile)
    t0 = time.monotonic()
    results = stages.run(
        plan,
        lambda stage: _run_one(
            PLAYBOOKS / stage.playbook, env, limit, extra, echo, profile, f"[{stage.playbook}] "
        ),
        lambda recap: recap.returncode == 0,
    )
    return _combined(plan, results, time.monotonic() - t0)


def _combined(plan: list[stages.Stage], results: list[Recap | None], seconds: float) -> Recap:
    """One recap for a staged run: counts and task seconds added up per host and task, the
    outputs one after the other in site order, and the playbooks that never ran named."""
    hosts: dict[str, dict[str, int]] = {}
    task_seconds: dict[str, float] = {}
    outputs = []
    for stage, recap in zip(plan, results, strict=True):
        if recap is None:
            outputs.append(f"NOT RUN [{stage.playbook}]: an earlier stage failed\n")
            continue
        outputs.append(recap.output)
        for host, counts in recap.hosts.items():
            mine = hosts.setdefault(host, {})
            for key, value in counts.items():
                mine[key] = mine.get(key, 0) + value
        for task, took in recap.task_seconds.items():
            task_seconds[task] = task_seconds.get(task, 0.0) + took
    codes = [r.returncode for r in results if r is not None]
    returncode = max(codes, default=1) if None not in results else max([1, *codes])
    return Recap(hosts, seconds, returncode, "".join(outputs), task_seconds)


def _run_one(
    playbook: Path,
    env: str,
    limit: str | None,
    extra: list[str] | None,
    echo: bool,
    profile: bool,
    prefix: str = "",
) -> Recap:
    argv = [_tool("ansible-playbook"), "-i", str(inventory_path(env)), str(playbook)]
    if limit:
        argv += ["--limit", limit]
    argv += extra or []
    t0 = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        env=ansible_environ(profile),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if echo:
            sys.stdout.write(prefix + line)
            sys.stdout.flush()
    returncode = proc.wait()
    output = "".join(lines)
    return Recap(
        parse_recap(output),
        time.monotonic() - t0,
        returncode,
        output,
        parse_task_seconds(output) if profile else {},
    )


def _tool(name: str) -> str:
    """Prefer the tool next to this interpreter (the project's .venv)."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name
