"""A host's settings the way Ansible resolves them: the inventory's value, else the role's default.

The Python side needs a few of the roles' values (the app's root and socket, the load balancer's
maintenance flag). Reading them here, from the role's own `defaults/main.yml` rendered with the
host's inventory variables, means each value is written once: change a default or override it in
the inventory, and `fab deploy` follows, as the next converge does.
"""

from __future__ import annotations

import functools
from typing import Any

from fetchfleet.inventory import REPO, Host, InventoryError

ROLES = REPO / "roles"


@functools.cache
def role_defaults(role: str) -> dict[str, Any]:
    path = ROLES / role / "defaults" / "main.yml"
    if not path.is_file():
        raise InventoryError(f"role {role!r} has no defaults ({path})")
    from ansible.parsing.dataloader import DataLoader  # heavy: only when a setting is read

    return dict(DataLoader().load_from_file(str(path), trusted_as_template=True) or {})


def setting(host: Host, name: str, role: str | None = None) -> Any:
    """`name` for `host`: its inventory value, else the default of `role` (by default the role its
    prefix names: app_root -> roles/app), templated with the host's variables."""
    role = role or name.split("_", 1)[0]
    defaults = role_defaults(role)
    if name not in host.vars and name not in defaults:
        raise InventoryError(f"{name} is neither set for {host.name} nor a default of roles/{role}")
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar

    variables = {**defaults, **host.vars, "inventory_hostname": host.name}
    value = host.vars[name] if name in host.vars else defaults[name]
    return Templar(loader=DataLoader(), variables=variables).template(value)
