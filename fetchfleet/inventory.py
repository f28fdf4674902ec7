"""The inventory, read through Ansible's own API: one source of truth for Ansible and Fabric.

Fab tasks never hard-code a host; they ask a `Fleet` for a group. Reading through Ansible's
`InventoryManager` means every inventory Ansible understands (YAML, INI, the EC2 plugin) works here
too, with group_vars and host_vars merged exactly as a playbook would see them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
INVENTORIES = REPO / "inventory"


class InventoryError(Exception):
    """The inventory is missing, unreadable, or lacks what a task needs."""


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    groups: tuple[str, ...]
    vars: dict[str, Any] = field(compare=False, repr=False)


@dataclass(frozen=True)
class Fleet:
    """The hosts of one inventory (an environment: lab, staging, production)."""

    name: str
    path: Path
    hosts: tuple[Host, ...]
    group_vars: dict[str, Any] = field(repr=False)

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        known = ", ".join(h.name for h in self.hosts)
        raise InventoryError(f"no host {name!r} in inventory {self.name} (known: {known})")

    def group(self, name: str) -> list[Host]:
        return [h for h in self.hosts if name in h.groups]

    def var(self, name: str) -> Any:
        """A variable set for the whole inventory: group_vars/all or the `all` group's vars, as
        written (templates are not rendered; `fetchfleet.settings.setting` renders per host)."""
        if name not in self.group_vars:
            raise InventoryError(f"inventory {self.name} does not set {name!r} (group_vars/all)")
        return self.group_vars[name]


def inventory_path(env: str) -> Path:
    """Resolve an environment name (`lab`) or a path to an inventory."""
    candidate = Path(env)
    if not candidate.exists():
        candidate = INVENTORIES / env
    if not candidate.exists():
        known = ", ".join(sorted(p.name for p in INVENTORIES.iterdir() if p.is_dir()))
        raise InventoryError(f"unknown environment {env!r}: no inventory/{env} (known: {known})")
    return candidate.resolve()


def load_fleet(env: str = "lab") -> Fleet:
    path = inventory_path(env)
    # Imported here: ansible is heavy, and plain helpers of this module should not pay for it.
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    os.environ.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))
    init_ansible_plugins()
    loader = DataLoader()
    manager = InventoryManager(loader=loader, sources=[str(path)])
    variables = VariableManager(loader=loader, inventory=manager)
    hosts = []
    for host in manager.get_hosts():
        hostvars = variables.get_vars(host=host, include_hostvars=False)
        groups = tuple(sorted(g.name for g in host.get_groups() if g.name not in ("all",)))
        address = str(hostvars.get("ansible_host", host.name))
        hosts.append(Host(host.name, address, groups, dict(hostvars)))
    if not hosts:
        raise InventoryError(f"inventory {path} has no hosts")
    return Fleet(path.name, path, tuple(hosts), _all_group_vars(loader, manager, path))


_plugins_ready = False


def init_ansible_plugins() -> None:
    """Ansible's plugin loader, once per process: without it, inventory plugins from collections
    (amazon.aws.aws_ec2 for an EC2 inventory) do not load; ansible's own CLIs do this at start."""
    global _plugins_ready
    if not _plugins_ready:
        from ansible.plugins.loader import init_plugin_loader

        init_plugin_loader()
        _plugins_ready = True


def _all_group_vars(loader: Any, manager: Any, path: Path) -> dict[str, Any]:
    """The `all` group's own variables and group_vars/all (Ansible's host_group_vars plugin)."""
    from ansible.plugins.loader import vars_loader

    init_ansible_plugins()
    group = manager.groups["all"]
    found = dict(group.get_vars())
    plugin = vars_loader.get("ansible.builtin.host_group_vars")
    directory = path if path.is_dir() else path.parent
    found.update(plugin.get_vars(loader, str(directory), [group]))
    return found
