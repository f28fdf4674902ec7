"""A playbook made only of `import_playbook` entries (site.yml) run as stages: each imported
playbook starts as soon as every earlier one that touches any of its hosts has finished, so the
tiers on separate hosts (Solr and RabbitMQ on the broker host, PostgreSQL on the database hosts,
Transmission and then the web tier, the lab seeder) converge side by side instead of one after
the other, while every host still sees its playbooks in site.yml's order.

The hosts of a play come from Ansible's own pattern resolution on the inventory; a pattern it
cannot resolve here (a template, say) counts as every host, which only makes the plan more
serial. When a stage fails, no later stage starts (the ones already running finish) and the
recap says which playbooks were never run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HostsOf = Callable[[str], frozenset[str]]


@dataclass(frozen=True)
class Stage:
    playbook: str  # a path relative to the playbooks directory, as site.yml imports it
    hosts: frozenset[str]
    after: tuple[int, ...]  # the earlier stages (indexes) it waits for


def imports(path: Path) -> list[str] | None:
    """The playbooks PATH imports, in order, when it consists of nothing else (no plays, no
    `when`, `vars` or `tags` on an import); None otherwise."""
    entries = yaml.safe_load(path.read_text())
    if not isinstance(entries, list) or not entries:
        return None
    found = []
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) - {"name", "ansible.builtin.import_playbook"}:
            return None
        target = entry.get("ansible.builtin.import_playbook")
        if not isinstance(target, str) or "{{" in target:
            return None
        found.append(target)
    return found


def play_patterns(path: Path) -> list[str]:
    """The `hosts:` pattern of every play in PATH, following its own imports."""
    patterns: list[str] = []
    for entry in yaml.safe_load(path.read_text()) or []:
        if not isinstance(entry, dict):
            continue
        target = entry.get("ansible.builtin.import_playbook") or entry.get("import_playbook")
        if isinstance(target, str):
            patterns += play_patterns(path.parent / target)
        elif "hosts" in entry:
            hosts = entry["hosts"]
            patterns.append(":".join(hosts) if isinstance(hosts, list) else str(hosts))
    return patterns


def plan(path: Path, hosts_of: HostsOf) -> list[Stage] | None:
    """Stages for the playbook at PATH, or None when it is not made of imports only."""
    names = imports(path)
    if names is None:
        return None
    stages: list[Stage] = []
    for name in names:
        hosts = frozenset().union(*(hosts_of(p) for p in play_patterns(path.parent / name)))
        after = tuple(i for i, s in enumerate(stages) if s.hosts & hosts)
        stages.append(Stage(name, hosts, after))
    return stages


def within(plan: Sequence[Stage], hosts: frozenset[str]) -> list[Stage]:
    """The stages that touch any of HOSTS (a `--limit`), each waiting for the kept ones it
    waited for: a stage with no host in the limit would start ansible-playbook for nothing."""
    kept = [i for i, stage in enumerate(plan) if stage.hosts & hosts]
    index = {old: new for new, old in enumerate(kept)}
    return [
        Stage(plan[i].playbook, plan[i].hosts, tuple(index[j] for j in plan[i].after if j in index))
        for i in kept
    ]


def ansible_hosts_of(inventory: Path) -> HostsOf:
    """Resolve host patterns as ansible-playbook does; a pattern it cannot resolve here (a
    template, or anything that raises) means every host."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    from fetchfleet.inventory import init_ansible_plugins

    loaded: dict[str, Any] = {}

    def manager() -> Any:  # loaded on first use: a playbook that is not staged never pays for it
        if not loaded:
            init_ansible_plugins()
            loaded["manager"] = InventoryManager(loader=DataLoader(), sources=[str(inventory)])
            loaded["everyone"] = frozenset(h.name for h in loaded["manager"].get_hosts("all"))
        return loaded["manager"]

    def hosts_of(pattern: str) -> frozenset[str]:
        inventory_manager = manager()
        everyone = loaded["everyone"]
        # localhost plays act for the fleet (collecting, building): they wait for everything.
        if "{{" in pattern or "{%" in pattern or pattern.strip() in ("localhost", "127.0.0.1"):
            return everyone
        try:
            return frozenset(h.name for h in inventory_manager.get_hosts(pattern))
        except Exception:  # any pattern Ansible refuses: assume every host
            return everyone

    return hosts_of


def run(
    stages: Sequence[Stage], run_one: Callable[[Stage], Any], ok: Callable[[Any], bool]
) -> list[Any | None]:
    """Run every stage once the stages it waits for have succeeded, as many at once as the plan
    allows; the results in stage order, None for a stage that never ran (a stage it waited
    for failed, or another failed first)."""
    results: list[Any | None] = [None] * len(stages)
    errors: list[BaseException] = []
    state = ["waiting"] * len(stages)
    lock = threading.Condition()

    def work(i: int) -> None:
        result, good = None, False
        try:
            result = run_one(stages[i])
            good = ok(result)
        except BaseException as err:  # raised again in the caller's thread
            errors.append(err)
        finally:
            with lock:
                results[i] = result
                state[i] = "done" if good else "failed"
                lock.notify_all()

    threads: list[threading.Thread] = []
    with lock:
        while True:
            if "failed" not in state:
                for i, stage in enumerate(stages):
                    if state[i] == "waiting" and all(state[j] == "done" for j in stage.after):
                        state[i] = "running"
                        thread = threading.Thread(target=work, args=(i,), name=stage.playbook)
                        threads.append(thread)
                        thread.start()
            if "running" not in state:
                break
            lock.wait()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
