"""The lab's shape, read from the inventory (`inventory/lab/`): its network, its hosts, where its
state lives; the checks that this machine can run it; the small system helpers the rest uses.
Only the standard library (and the inventory reader): `preflight` must run before anything else
is installed."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from fetchfleet.errors import FleetError
from fetchfleet.inventory import Fleet, Host, load_fleet
from fetchfleet.output import Clock

REQUIRED_TOOLS = {
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "nft": "nftables",
    "ip": "iproute2",
    "mkfs.ext4": "e2fsprogs",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}

# Left in the lab's state dir by `make lab` (tests/lab/labguard.py): the lab a newcomer's
# `make test` may rebuild; any other `fab lab.up` clears it.
MAKE_LAB_MARK = "made-by-make-lab"

_clock = Clock()
say = _clock.say  # one progress line: elapsed time, the host it is about, what happened


class LabError(FleetError):
    """What failed, on which host, and what to run to look closer or fix it."""

    prefix = "lab"

    def __init__(self, what: str, host: str | None = None, hint: str | None = None):
        super().__init__(what, host, hint=hint)


@dataclass(frozen=True)
class LabHost:
    name: str
    address: str
    groups: tuple[str, ...]
    # The inventory's host, with the connection settings every SSH to it uses.
    inventory: Host = field(compare=False, repr=False)


@dataclass(frozen=True)
class Lab:
    state_dir: Path
    bridge: str
    network: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    domain: str
    disk_size: str
    boot_timeout: float
    hosts: tuple[LabHost, ...]

    @classmethod
    def from_fleet(cls, fleet: Fleet) -> Lab:
        network = ipaddress.ip_network(str(fleet.var("lab_network")))
        gateway = ipaddress.ip_address(str(fleet.var("lab_gateway")))
        if gateway not in network:
            raise LabError(f"lab_gateway {gateway} is outside lab_network {network}")
        hosts = []
        for host in fleet.hosts:
            address = ipaddress.ip_address(host.address)
            if address not in network or address in (gateway, network.network_address):
                raise LabError(
                    f"address {address} is not a usable host address in {network}",
                    host.name,
                    f"fix ansible_host of {host.name} in {fleet.path}",
                )
            hosts.append(LabHost(host.name, host.address, host.groups, host))
        taken: dict[str, str] = {}
        for host in hosts:
            if host.address in taken:
                raise LabError(
                    f"address {host.address} is also given to {taken[host.address]}", host.name
                )
            taken[host.address] = host.name
        return cls(
            state_dir=Path(str(fleet.var("lab_state_dir"))),
            bridge=str(fleet.var("lab_bridge")),
            network=network,
            gateway=gateway,
            domain=str(fleet.var("lab_domain")),
            disk_size=str(fleet.var("lab_disk_size")),
            boot_timeout=float(fleet.var("lab_boot_timeout")),
            hosts=tuple(hosts),
        )

    def host(self, name: str) -> LabHost:
        for host in self.hosts:
            if host.name == name:
                return host
        known = ", ".join(h.name for h in self.hosts)
        raise LabError(f"no lab host {name!r} (known: {known})", hint="see inventory/lab/hosts.yml")

    # paths
    @property
    def ssh_key(self) -> Path:
        return self.state_dir / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "ssh" / "known_hosts"

    @property
    def ca_dir(self) -> Path:
        """The lab's one CA: the PagerDuty stand-in's TLS and every host's certificate."""
        return self.state_dir / "pagerduty"

    def host_dir(self, name: str) -> Path:
        return self.state_dir / "hosts" / name

    def root(self, name: str) -> Path:
        return self.host_dir(name) / "root"

    def disk_mount(self, name: str) -> Path:
        return self.host_dir(name) / "disk"

    def disk_image(self, name: str) -> Path:
        return self.host_dir(name) / "disk.img"

    def console_log(self, name: str) -> Path:
        return self.host_dir(name) / "console.log"


def load_lab(env: str = "lab") -> Lab:
    return Lab.from_fleet(load_fleet(env))


def run(*argv: str, host: str | None = None, input: str | None = None) -> str:
    """Run a command; on failure raise a LabError that shows the command and its stderr."""
    proc = subprocess.run(argv, input=input, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise LabError(f"`{' '.join(argv)}` failed: {' / '.join(detail)}", host)
    return proc.stdout


def mounts() -> set[Path]:
    points = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        points.add(Path(point))
    return points


def is_mounted(path: Path) -> bool:
    return path in mounts()


def preflight() -> None:
    """Refuse early, with the fix, when this machine cannot run the lab."""
    if os.geteuid() != 0:
        raise LabError(
            "needs root (it mounts overlays, creates a bridge and boots containers)",
            hint="run it as root: sudo fab lab.up (or sudo make lab)",
        )
    missing = {tool: pkg for tool, pkg in REQUIRED_TOOLS.items() if shutil.which(tool) is None}
    if missing:
        packages = " ".join(sorted(set(missing.values())))
        raise LabError(
            f"missing tools: {', '.join(sorted(missing))}",
            hint=f"run `make setup` (or: apt-get install {packages})",
        )
