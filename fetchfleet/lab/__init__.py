"""The lab: a fleet of real Debian 12 hosts booted with systemd-nspawn on this one machine.

Every host is a full Debian system (systemd as PID 1, sshd, networkd) on one Linux bridge with NAT
to the package registry. One base image is built by debootstrap and cached under a hash of its
recipe; each host is an overlayfs whose writable layer lives on the host's own ext4 disk image, so
a fresh host costs seconds and a host's disk can really fill up. The host list comes from the
inventory (`inventory/lab/`), never from this package.

Everything here is idempotent and recovers from a lab left half-up by a killed process: stale
mounts are reused or removed, the bridge and nft table are re-checked, dead hosts are booted again.

Modules, one job each: `model` (the lab's shape from the inventory, preflight, system helpers),
`procs` (nspawn and PID 1 records), `network`, `image` (the cached base), `host` (create, boot,
wait, stop, kill, destroy), `access` (commands over fetchfleet.remote, probes, secrets), `fleet`
(up, down, reset), `faults` (network cut, full disk), `overview` (status).

Names are loaded on first use: `preflight` runs with nothing but the standard library, before the
toolchain that SSH needs is installed.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "model": [
        "MAKE_LAB_MARK", "REQUIRED_TOOLS", "Lab", "LabError", "LabHost", "is_mounted", "load_lab", "mounts",
        "preflight", "run", "say",
    ],
    "procs": ["Proc", "_live", "_record", "_wait_dead", "host_state"],
    "network": [
        "NFT_TABLE", "_drop_link", "_link_state", "_links", "_nft_rules", "check_addresses",
        "network_down", "network_up", "veth",
    ],
    "image": ["BASE_PACKAGES", "SUITE", "base_id", "base_recipe", "ensure_base"],
    "host": [
        "STOP_TIMEOUT", "_ssh_ready", "boot_host", "create_host", "destroy_host", "kill_host",
        "stop_host", "unmount_host", "wait_until_up", "write_known_hosts",
    ],
    "access": ["run_on", "secret", "ssh_argv", "tcp_open"],
    "fleet": ["down", "reset", "select", "up"],
    "faults": ["FILL_FILE", "cut_network", "disk_usage", "fill_disk", "free_disk", "heal_network"],
    "overview": ["status", "table"],
}  # fmt: skip
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'fetchfleet.lab' has no attribute {name!r}")
    return getattr(importlib.import_module(f"fetchfleet.lab.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return __all__
